%% Stand-in for erlmcp's session replicator (see erlmcp_stub.erl): a status map with a lag.
-module(erlmcp_session_replicator).
-export([get_replication_status/0]).

get_replication_status() ->
    #{status => ok, lag_ms => 12, replicas => [<<"erlmcp2">>]}.
