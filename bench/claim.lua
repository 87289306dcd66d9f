-- wrk script: every request claims for a user never seen before.
-- Usage: wrk -s bench/claim.lua URL/v1/campaigns/ID/claims -H "Authorization: Bearer T"
local counter = 0
local threads = {}

function setup(thread)
  thread:set("prefix", "u" .. tostring(#threads) .. "-" .. tostring(math.random(1, 1000000000)))
  table.insert(threads, thread)
end

function init(args)
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  counter = counter + 1
  -- nil headers: wrk's own, with the Authorization from the command line.
  return wrk.format("POST", nil, nil, '{"user_id":"' .. prefix .. "-" .. counter .. '"}')
end
