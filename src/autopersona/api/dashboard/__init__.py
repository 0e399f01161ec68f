"""The dashboard: server-rendered HTML pages with inline SVG charts, no external assets."""
