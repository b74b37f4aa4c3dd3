-- Shared by the revoking scripts (prepended to them): publish the numbered
-- invalidation `msg` (`<what>@<publisher>:<n>`) if `changed`, else its number
-- alone (`-@<publisher>:<n>`): subscribers count every number (see seq.rs).
local function announce(changed, msg)
  if not changed then msg = (string.gsub(msg, '^[^@]*', '-')) end
  redis.call('PUBLISH', '__INVALIDATION_CHANNEL__', msg)
end
