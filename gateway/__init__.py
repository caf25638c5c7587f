"""The HTTP gateway: authenticates each kind of client, validates, maps HTTP to the services'
RPCs and maps their errors back. No business rule lives here."""
