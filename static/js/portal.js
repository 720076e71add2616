// Starts the NHS.UK frontend's components. A file rather than an inline script, so the Content-Security-Policy
// allows scripts from this site only; the frontend's (hashed, in production) URL comes from the tag's data.
const tag = document.querySelector("script[data-nhsuk-frontend]");
const { initAll } = await import(tag.dataset.nhsukFrontend);
initAll();
