"""Stand-ins for systems outside ours (the operator's billing), run as real local servers in dev
and in tests. Never used in production."""
