"""The wave planner, split by concern (kept so that older imports keep working):

- migrations_app.planning.calendar, .units, .placement: the plain-Python core (no Django);
- selectors.planning: the aggregates the planner reads;
- services.plans (preview, commit), services.wave_moves, services.pilots, services.programme.
"""

from migrations_app.planning.calendar import (  # noqa: F401
    EVENING,
    LONDON,
    WEEKEND,
    Window,
    WindowRules,
    london,
    windows_between,
)
from migrations_app.planning.placement import (  # noqa: F401
    BLACKOUT_COVERS_HORIZON,
    CONFLICTING_PREFERENCES,
    NO_CAPACITY,
    NO_WINDOW_OF_KIND,
    REASONS,
    TOO_LARGE,
    Plan,
    PlannedWave,
    Unplaced,
    plan_units,
)
from migrations_app.planning.units import (  # noqa: F401
    ChunkRow,
    GroupRow,
    OrgInfo,
    Piece,
    Unit,
    build_units,
    large_organisations,
)
from migrations_app.selectors.planning import (  # noqa: F401
    _chunk_rows,
    _group_rows,
    _org_infos,
    _plannable,
    closed_periods,
)
from migrations_app.selectors.scoping import require_planner  # noqa: F401
from migrations_app.services.pilots import pilot_wave_create  # noqa: F401
from migrations_app.services.plans import plan_commit, plan_preview, wave_name  # noqa: F401
from migrations_app.services.programme import (  # noqa: F401
    SETTINGS_FIELDS,
    closed_period_add,
    closed_period_remove,
    programme_settings_update,
)
from migrations_app.services.wave_moves import (  # noqa: F401
    MOVABLE_INTO,
    MoveResult,
    wave_move_mailbox,
    wave_move_organisation,
    wave_place_carried_over,
)
