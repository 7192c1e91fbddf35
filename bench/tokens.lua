-- wrk script: GET /v1/channel cycling through the tokens of the file $BENCH_TOKENS, one per
-- line, so the load looks like many calls (distinct issuers) instead of one repeated call.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end
local i = 0

request = function()
  i = i + 1
  return wrk.format("GET", "/v1/channel", { ["Authorization"] = "jwt " .. tokens[(i % #tokens) + 1] })
end
