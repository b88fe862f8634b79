-- Argo CD health check for ops.meerkat.dev/Operation (ops-operator).
-- Tested by pkg/health/argocd_test.go; inlined in config/argocd/argocd-cm.yaml.
--
-- The controller must have observed the latest spec (a cancel, retire or
-- abort request is a spec change; it catches up on a final operation too,
-- within seconds). Then a final phase decides alone: Completed, Cancelled,
-- Aborted, Retired and Terminated are Healthy (ended as asked), Failed and
-- Rejected are Degraded. Before that, Stalled=True (the session does not
-- exist) is Degraded, Running is Healthy, and Pending, Provisioning and
-- Retiring are Progressing.
local hs = {}

local function condition(status, typ)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == typ then
      return c
    end
  end
  return nil
end

local function message(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return default
end

-- Argo CD opens only the base, table and package libraries (no string.*).
local lower = {
  Pending = "pending", Provisioning = "provisioning", Running = "running", Retiring = "retiring",
  Completed = "completed", Failed = "failed", Aborted = "aborted", Cancelled = "cancelled",
  Retired = "retired", Terminated = "terminated", Rejected = "rejected",
}

local md = obj.metadata or {}
local st = obj.status
local spec = obj.spec or {}
local session = spec.sessionName or "?"

if md.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion"
  return hs
end

local phase = "Pending"
if st ~= nil and st.phase ~= nil and st.phase ~= "" then
  phase = st.phase
end
local ready = condition(st, "Ready")
local stalled = condition(st, "Stalled")
local reconciling = condition(st, "Reconciling")

if st ~= nil and st.observedGeneration ~= nil and md.generation ~= nil and st.observedGeneration ~= md.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe generation " .. md.generation .. " (observed " .. st.observedGeneration .. ")"
  return hs
end

if phase == "Completed" or phase == "Cancelled" or phase == "Aborted" or phase == "Retired" or phase == "Terminated" then
  hs.status = "Healthy"
  hs.message = message(ready, lower[phase])
  return hs
end
if phase == "Failed" or phase == "Rejected" then
  hs.status = "Degraded"
  hs.message = message(stalled, message(ready, lower[phase]))
  return hs
end

if st == nil or st.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "waiting for admission by session " .. session .. ": no status yet"
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, "stalled")
  return hs
end
if phase == "Running" then
  hs.status = "Healthy"
  hs.message = message(ready, "running")
  return hs
end
if phase == "Pending" or phase == "Provisioning" or phase == "Retiring" then
  hs.status = "Progressing"
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = message(reconciling, lower[phase])
  else
    hs.message = message(ready, lower[phase])
  end
  return hs
end

hs.status = "Unknown"
hs.message = "unknown phase " .. phase
return hs
