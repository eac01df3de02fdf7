%% Stand-in for the parts of a running erlmcp node that dr-agent's Erlang-node probe talks to
%% (agent/src/probe/erlang.rs), compiled with erlc by agent/tests/erlang_probe.rs into a temp
%% dir and loaded with `erl -pa DIR -eval 'erlmcp_stub:start()'`. Erlang wants one module per
%% file, so erlmcp_health.erl and erlmcp_session_replicator.erl sit next to this one.
-module(erlmcp_stub).
-export([start/0, flood/1, stop_server/0, hang/0, crash/0]).

%% Registers `erlmcp_server` (the process whose queue the runbook watches), then prints
%% "ready <node>" so the test learns the full node name (`-sname` picks the short host name).
start() ->
    Pid = spawn(fun server/0),
    true = register(erlmcp_server, Pid),
    io:format("ready ~s~n", [node()]),
    ok.

%% Only `stop` is ever received: every other message stays in the mailbox, like a backlog of
%% requests the real server cannot keep up with.
server() ->
    receive
        stop -> ok
    end.

%% Makes erlmcp_server's message_queue_len grow by N.
flood(N) when is_integer(N), N >= 0 ->
    lists:foreach(fun(I) -> erlmcp_server ! {request, I} end, lists:seq(1, N)),
    ok.

%% Stops erlmcp_server and returns once the name is gone, so the probe sees "not registered".
stop_server() ->
    case whereis(erlmcp_server) of
        undefined ->
            ok;
        Pid ->
            Ref = monitor(process, Pid),
            Pid ! stop,
            receive
                {'DOWN', Ref, process, Pid, _} -> ok
            end
    end.

%% A health function that never answers (a hung VM, for the timeout path).
hang() ->
    timer:sleep(infinity).

%% A health function that raises (the badrpc path).
crash() ->
    error(boom).
