from services.common.alembic_env import run_migrations
from services.tracking.models import Base

run_migrations(Base.metadata)
