"""Results: the store, exports, statistics, group keys, the one bounds rule and the report.
Imports only the components below it (records, spec, schedules)."""
