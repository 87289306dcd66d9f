-- wrk script: one fixed claim, the same request every time, so that wrk
-- builds it once (no Lua per request). Against a sold-out campaign every
-- answer is the same 410 whoever claims; a generator that formats a new body
-- per request runs out of its core before a node answering from memory does.
-- Usage: wrk -s bench/sold-out.lua URL/v1/campaigns/ID/claims -H "Authorization: Bearer T"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user_id":"late-comer"}'
