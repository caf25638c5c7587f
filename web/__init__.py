"""The members' website: server-rendered pages in Russian, a client of the gateway's public HTTP API."""
