"""One module per area of the site: its GET pages and the forms they post."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from web.session import Session


def current_session(request: Request) -> Session:
    session = Session(request, request.app.state.settings, request.app.state.api)
    request.state.session = session  # the error handlers answer with the same cookies
    return session


BrowserSession = Annotated[Session, Depends(current_session)]
