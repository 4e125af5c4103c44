-- wrk script for the benchmark: `wrk ... -s bench/load.lua URL -- METHOD TOKEN PATH [BODY...]`
--
-- Every request carries `Authorization: Bearer TOKEN`. With bodies (POST),
-- each request sends the next body in turn, so N bodies naming N
-- conversations spread the load over them. When done, one line
-- `BENCH_JSON {...}` gives the counts and latency percentiles (microseconds).

local requests = {}
local index = 0

function init(args)
  local method, token, path = args[1], args[2], args[3]
  local headers = { ["Authorization"] = "Bearer " .. token }
  if #args > 3 then
    headers["Content-Type"] = "application/json"
    for k = 4, #args do
      requests[#requests + 1] = wrk.format(method, path, headers, args[k])
    end
  else
    requests[1] = wrk.format(method, path, headers, nil)
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,'
      .. '"p99_us":%d,"max_us":%d,"mean_us":%.1f,"errors_connect":%d,'
      .. '"errors_read":%d,"errors_write":%d,"errors_status":%d,'
      .. '"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
