# Runs inside GIMP 3, executed by driver.py in its namespace (check, stylize, _with_config, ...):
# the plug-in as installed for GIMP from Flatpak ("flatpak": true in nst-bridge.json: it never
# starts the engine itself). First with no engine running: the message must name the command;
# then that very command is run here, "outside GIMP", and the same call must succeed through it
# (with --no-preload and, where a model ships, the model method: no VGG-19 to load, so the
# check stays short on a busy machine).
# tests/test_gimp.py makes the assertions. GIMP's Python: gi + stdlib only.
import shlex
import subprocess


def _state_pid():
    try:
        with open(os.path.join(STATE_DIR, "server.json")) as fh:
            return json.load(fh)["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _stop_engine():
    """Stop whatever engine server the earlier checks left running; wait for its state file to go."""
    pid = _state_pid()
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            os.remove(os.path.join(STATE_DIR, "server.json"))
    deadline = time.monotonic() + 20
    while _state_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def _flatpak_config():
    with open(os.path.join(PLUGIN_DIR, "nst-bridge.json")) as fh:
        cfg = json.load(fh)
    cfg["flatpak"] = True
    return json.dumps(cfg)


FLATPAK = {}


@check("flatpak_no_server")
def _():
    stopped = _stop_engine()
    out = _with_config(_flatpak_config())
    out["stopped_pid"] = stopped
    out["server_started"] = _state_pid() is not None  # the plug-in must not have started one
    commands = [line.strip() for line in (out.get("message") or "").splitlines() if line.startswith("    ")]
    FLATPAK["command"] = out["command"] = commands[0] if commands else None
    return out


@check("flatpak_served")
def _():
    command = FLATPAK.get("command")
    if not command:
        return {"error": "no command in the message"}
    server = subprocess.Popen(shlex.split(command) + ["--no-preload"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    out = {"command_pid": server.pid}
    try:
        deadline = time.monotonic() + 120
        while _state_pid() != server.pid and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        out.update(state_pid=_state_pid(), exit_before_call=server.poll())
        out.update(_with_config(_flatpak_config(), **({"method": "model", "model": MODEL} if MODEL else {})))
        out["state_pid_after"] = _state_pid()
        out["timing"] = timing_lines()[-1:]
    finally:
        server.terminate()
        try:
            out["exit_code"] = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            out["exit_code"] = server.wait()
        out["state_left"] = _state_pid() is not None
    return out
