"""The dashboard (`conveyor serve`): Starlette on uvicorn, Jinja templates, htmx; the state store the CLI uses.

- app.py: the Starlette application and its routes (pages, the live deployment's server-sent events);
- pages.py: what each page shows, read through the operations and the state store;
- charts.py: DORA's weekly figures as bar geometry for server-rendered SVG (no chart library, no JS);
- templates/: Jinja templates, autoescaped (release names, user names and host output are hostile input);
- static/: htmx 2.0.11 and its SSE extension 2.2.4 as published on npm (htmx.org, htmx-ext-sse; 0BSD),
  copied unchanged: no JavaScript build step, no CDN.

Only the CLI imports this package, and only for `conveyor serve`.
"""
