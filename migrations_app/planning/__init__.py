"""The planner's core on plain data: the calendar of windows, the units that must move together and their
placement in windows. No Django here, so the property tests run it thousands of times without a database;
services.plans reads the aggregates (selectors.planning) and saves what it places."""
