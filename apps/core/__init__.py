"""The kernel: what every app of the portal builds on, importing none of them. Errors and
their JSON, money and ledger helpers, audit, CSV streaming, charts, parsers and renderers,
progress, admin actions, cache generations, logs and request ids, the hot path's
statements (hot rows, prepared statements, arrays, the period lock, fast rows), periodic
jobs and staff groups as data."""
