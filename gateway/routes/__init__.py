"""Routes by area. Each handler: parse, build the request, await one or a few RPCs, return JSON."""
