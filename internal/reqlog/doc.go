// Package reqlog is the one request-log middleware of Sigil's HTTPS surfaces
// (/v1, /acme, /ui): one line per request with its request id, surface,
// method, path, the status sent on the wire, the latency and, for a
// refusal, the reason the surface gave; an internal failure makes the line
// an error carrying its cause.
//
// A surface's adapter runs every route (its catch-all too) inside [Handler]
// and tells the line what only it knows through the request's [Entry]
// ([From]): the actor, the reason of a 4xx, an internal error. The entry lives in the request's
// context, as the request id does; it is request-scoped and nothing else.
//
// Imports: internal/httpstatus only from this module.
package reqlog
