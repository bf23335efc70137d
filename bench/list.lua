-- bench/list.lua: wrk script for livedb's list-query benchmark.
-- Each request asks for one category of collection bench_list (1000
-- categories "cat-0".."cat-999", 100 documents each), rotating so that
-- every thread walks all categories from its own starting point. No
-- response() callback: wrk then skips handing bodies to Lua, and its own
-- "Non-2xx or 3xx responses" line reports failed answers.

local threads = {}
i = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  i = (tid or 0) * 500
end

-- bench/run exports the admin's token: every request carries it.
auth = { ["Authorization"] = "Bearer " .. (os.getenv("LIVEDB_TOKEN") or "") }

function request()
  i = i + 1
  local path = string.format(
    '/v1/c/bench_list?where=category:eq:%%22cat-%d%%22&limit=100', i % 1000)
  return wrk.format("GET", path, auth)
end
