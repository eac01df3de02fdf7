%% Stand-in for erlmcp's health module (see erlmcp_stub.erl).
-module(erlmcp_health).
-export([check_live/0, check_ready/0]).

check_live() ->
    ok.

%% A char list on purpose: the probe must show it as "ready", not [114,101,...].
check_ready() ->
    {ok, "ready"}.
