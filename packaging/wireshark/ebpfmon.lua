-- SPDX-License-Identifier: Apache-2.0
-- ebpfmon for Wireshark: the process behind each packet of an `ebpfmonctl capture` file
-- (or a ptcpdump one) as fields, usable in display filters and as columns:
--
--   ebpfmon.pid == 1234        ebpfmon.comm == "curl"        ebpfmon.uid == 1000
--   ebpfmon.unit == "nginx.service"        ebpfmon.container contains "web"
--   ebpfmon.container_id == "4f2a..."       ebpfmon.pod == "shop-7d9f"    ebpfmon.app == "org.gnome.Evince"
--
-- The data comes from the packet comments, in ptcpdump's form ("PID: 1234\nCmd: ..."),
-- one `Key: value` per line. (ebpfmon also writes the pid and tid as pcapng option 8,
-- epb_processid_threadid, which Wireshark 4.0 shows only as raw option bytes.)
--
-- Installed by the ebpfmon package in Wireshark's global Lua plugin folder; or copy it to
-- ~/.local/lib/wireshark/plugins/; or load it once: tshark -X lua_script:ebpfmon.lua

local proto = Proto("ebpfmon", "ebpfmon process")

local f = {
  pid = ProtoField.uint32("ebpfmon.pid", "Process ID"),
  tid = ProtoField.uint32("ebpfmon.tid", "Thread ID"),
  comm = ProtoField.string("ebpfmon.comm", "Command name"),
  cmd = ProtoField.string("ebpfmon.cmd", "Executable"),
  args = ProtoField.string("ebpfmon.args", "Arguments"),
  uid = ProtoField.uint32("ebpfmon.uid", "User ID"),
  ppid = ProtoField.uint32("ebpfmon.ppid", "Parent process ID"),
  pcmd = ProtoField.string("ebpfmon.parent_cmd", "Parent executable"),
  unit = ProtoField.string("ebpfmon.unit", "systemd unit"),
  cgroup = ProtoField.string("ebpfmon.cgroup", "cgroup"),
  container = ProtoField.string("ebpfmon.container", "Container name"),
  container_id = ProtoField.string("ebpfmon.container_id", "Container ID"),
  pod = ProtoField.string("ebpfmon.pod", "Pod name"),
  pod_namespace = ProtoField.string("ebpfmon.pod_namespace", "Pod namespace"),
  app = ProtoField.string("ebpfmon.app", "Desktop app"),
}
proto.fields = { f.pid, f.tid, f.comm, f.cmd, f.args, f.uid, f.ppid, f.pcmd, f.unit, f.cgroup, f.container, f.container_id, f.pod, f.pod_namespace, f.app }

local comment_field = Field.new("frame.comment")

-- The `Key: value` lines of every comment of the packet.
local function read_comments()
  local kv = {}
  local any = false
  for _, c in ipairs({ comment_field() }) do
    local text = tostring(c.value)
    for line in text:gmatch("[^\n]+") do
      local k, v = line:match("^%s*([%a]+):%s?(.-)%s*$")
      if k then
        kv[k] = v
        any = true
      end
    end
  end
  return any and kv or nil
end

local function basename(path)
  return path and path:match("([^/]+)$") or path
end

function proto.dissector(tvb, pinfo, tree)
  local kv = read_comments()
  if not kv or not kv.PID then return end
  local pid = tonumber(kv.PID)
  if not pid then return end
  local comm = kv.ThreadName
  if not comm or comm == "" then comm = basename(kv.Cmd) end
  local t = tree:add(proto, string.format("ebpfmon process: %d (%s)", pid, comm or "?"))
  t:add(f.pid, pid)
  local tid = tonumber(kv.ThreadId or kv.TID or "")
  if tid then t:add(f.tid, tid) end
  if comm and comm ~= "" then t:add(f.comm, comm) end
  if kv.Cmd and kv.Cmd ~= "" then t:add(f.cmd, kv.Cmd) end
  if kv.Args and kv.Args ~= "" then t:add(f.args, kv.Args) end
  local uid = tonumber(kv.UserId or "")
  if uid then t:add(f.uid, uid) end
  local ppid = tonumber(kv.ParentPID or "")
  if ppid then t:add(f.ppid, ppid) end
  if kv.ParentCmd and kv.ParentCmd ~= "" then t:add(f.pcmd, kv.ParentCmd) end
  if kv.Unit and kv.Unit ~= "" then t:add(f.unit, kv.Unit) end
  if kv.Cgroup and kv.Cgroup ~= "" then t:add(f.cgroup, kv.Cgroup) end
  if kv.ContainerName and kv.ContainerName ~= "" then t:add(f.container, kv.ContainerName) end
  if kv.ContainerId and kv.ContainerId ~= "" then t:add(f.container_id, kv.ContainerId) end
  if kv.PodName and kv.PodName ~= "" then t:add(f.pod, kv.PodName) end
  if kv.PodNamespace and kv.PodNamespace ~= "" then t:add(f.pod_namespace, kv.PodNamespace) end
  if kv.App and kv.App ~= "" then t:add(f.app, kv.App) end
end

-- true: every field is built for every packet, so frame.comment is there to read even
-- when nothing else asks for it (tshark without -V).
register_postdissector(proto, true)
