-- bench/create.lua: wrk script for livedb's durable-create benchmark.
-- Each request POSTs a new ~200-byte product document (varied values, no
-- id, so the server generates one). Answers are counted by status in each
-- thread; done() adds them up so bench/run can check that the collection
-- holds exactly as many documents as there were 201 answers.

local threads = {}

-- Globals, so that done() can read them from each thread with thread:get().
created = 0        -- 201 answers
other = 0          -- any other status
first_other = ""   -- status and start of the body of the first non-201
seq = 0

local adjectives = { "Sturdy", "Compact", "Deluxe", "Rugged", "Slim",
  "Classic", "Heavy-duty", "Portable", "Quiet", "Bright" }
local things = { "garden hose reel", "kitchen scale", "desk lamp",
  "camping stove", "cordless drill", "water bottle", "bike pump",
  "backpack", "wall clock", "tool chest" }
local categories = { "garden", "kitchen", "office", "outdoor", "tools",
  "sports", "travel", "home", "lighting", "storage" }
-- bench/run exports the admin's token: every request carries it.
local headers = { ["Content-Type"] = "application/json",
                  ["Authorization"] = "Bearer " .. (os.getenv("LIVEDB_TOKEN") or "") }

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
  seq = seq + 1
  local n = math.random(1, 999999)
  local body = string.format(
    '{"name":"%s %s, model %06d, brushed stainless steel, two-year warranty, ships in 2 days",' ..
    '"sku":"SKU-%d-%06d-%05d","price_cents":%d,"stock":%d,"category":"%s"}',
    adjectives[math.random(#adjectives)], things[math.random(#things)], n,
    tid or 0, seq % 1000000, math.random(0, 99999),
    math.random(99, 250000), math.random(0, 5000),
    categories[math.random(#categories)])
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  if status == 201 then
    created = created + 1
  else
    other = other + 1
    if first_other == "" then
      first_other = tostring(status) .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local c, o, first = 0, 0, ""
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
    if first == "" then first = t:get("first_other") or "" end
  end
  io.write(string.format("bench-counts: created_201=%d other_status=%d\n", c, o))
  if first ~= "" then
    io.write("bench-first-other: " .. string.gsub(first, "\n", " ") .. "\n")
  end
end
