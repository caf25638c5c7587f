"""Stand-ins for systems outside ours (the operator's billing, the operator's SSO), run as real
local servers or signers in dev and in tests. Never used in production."""
