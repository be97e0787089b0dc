// Package report computes the HQ page's tables from the read model's
// database (package hq): the month's visit coverage down to each member,
// disputes, needs, projects, events, device health and event-chain
// integrity. Every number carries the link to the rows behind it; a town
// secretary's query is confined to their town.
//
// Menu pages (Pages, in order):
//
//   - coverage: for Query.Unit (city → towns → villages → grids → members
//     at a grid), each row's linked households, visited, not visited and
//     share for the month; the unit's not-visited households (id, head,
//     address, grid, member; the first 500, the count links to all); the
//     share over the last 12 months (a table and a chart). A household
//     counts when not voided and linked (link_history at the month's end,
//     or now in the current month); visited when it has a non-voided
//     visit whose month is the month.
//   - disputes: open (open, mediating) by age band (0-7, 8-30, 31-90, 90+
//     days since opened) × category and × status; settled in the month per
//     town or village with the share settled at village level; time to
//     settle (median, mean days from opened_ms to settled_ms) per month.
//   - needs: raised and met per month; open (not resolved) by age ×
//     category; the month's needs by category.
//   - projects: by status per town or village.
//   - events: per branch (village) in the month and per month: meetings
//     (三会一课), theme party days (主题党日), service requests by way of
//     handling (direct, proxy, appointment).
//   - devices: devices in use, not synced for N days (Filter "days",
//     default 7), with pending work; app versions.
//   - chains: each device's event hash chain verified with
//     domain.VerifyChain (refused events' links included), broken first.
//
// Row pages behind the numbers: households (visited=0|1, member), visits
// (household, member), dispute-list (open, status, category, age,
// settled, level), need-list (open, status, category, age, raised, met),
// project-list (status), event-list (type, service_mode, device, all),
// device-list (days, pending, app_version). Links are
// "/p/<name>?<params>", params sorted and URL-encoded.
//
// Speed: coverage is read from the coverage tables the model keeps
// (package hq, coverage.go): per month, grid and member, the households
// linked at the month's end and those visited, kept exact by triggers on
// every write. A month not built yet is built once (hq.BuildCoverage,
// about half a second for a city); a page then sums a few thousand rows
// per month. On a database without those tables, opened read-only, or for
// a current month with a link dated after now (a clock ahead), a month is
// counted from the base tables: one pass over the households in scope,
// each one's link and visits found by index.
package report
