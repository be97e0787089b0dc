// Package report computes the HQ page's tables from the read model's
// database (package hq): the month's visit coverage down to each member,
// disputes, needs, projects, events, device health and event-chain
// integrity. Every number carries the link to the rows behind it; a town
// secretary's query is confined to their town.
package report
