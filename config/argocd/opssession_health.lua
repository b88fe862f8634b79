-- Argo CD health check for ops.meerkat.dev/OpsSession (ops-operator).
-- Tested by pkg/health/argocd_test.go; inlined in config/argocd/argocd-cm.yaml.
--
-- Healthy once the controller has processed the latest spec (Ready=True at
-- the current generation) and any requested termination is carried out
-- (Terminated=True); Progressing before that; Degraded on Stalled=True.
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

local md = obj.metadata or {}
local st = obj.status
local spec = obj.spec or {}

if md.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion: terminating the session's operations"
  return hs
end
if st == nil or st.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the ops-operator controller: no status yet"
  return hs
end
if md.generation ~= nil and st.observedGeneration ~= md.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe generation " .. md.generation .. " (observed " .. st.observedGeneration .. ")"
  return hs
end

local stalled = condition(st, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, "stalled")
  return hs
end
local reconciling = condition(st, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "reconciling")
  return hs
end
if spec.termination ~= nil then
  local terminated = condition(st, "Terminated")
  if terminated ~= nil and terminated.status == "True" then
    hs.status = "Healthy"
    hs.message = message(terminated, "terminated")
  else
    hs.status = "Progressing"
    hs.message = message(terminated, "terminating operations")
  end
  return hs
end
local ready = condition(st, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "ready")
  return hs
end
hs.status = "Progressing"
hs.message = message(ready, "waiting for the ops-operator controller")
return hs
