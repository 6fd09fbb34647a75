# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_segrelay_global_optspecs
    string join \n h/help V/version
end

function __fish_segrelay_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_segrelay_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_segrelay_using_subcommand
    set -l cmd (__fish_segrelay_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c segrelay -n "__fish_segrelay_needs_command" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_needs_command" -s V -l version -d 'Print version'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "send" -d 'Translate events and send them to a destination, or write the requests (--dry-run)'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "check" -d 'Validate the settings and the input, and count what would happen; nothing is sent'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "verify" -d 'Compare what the destination holds with what the input says it should'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "destinations" -d 'List the destination types, the calls each takes and their settings, and the destinations the settings file found configures'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "init" -d 'Write a commented starter settings file'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "orb" -d 'Manage Orb backfills by hand'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "man" -d 'Print the manual page (roff), or write every command\'s page to a folder'
complete -c segrelay -n "__fish_segrelay_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s c -l config -d 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s d -l destination -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l max-line-bytes -d 'Reject input lines longer than this many bytes (suffixes K, M)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l since -d 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l until -d 'Only events before TIME (RFC 3339, or a date: midnight UTC)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l received-since -d 'Segment\'s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l received-until -d 'Segment\'s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l types -d 'Only these call types (comma-separated: track, page, screen, identify, group, alias)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l events -d 'Only track events with these names (comma-separated); other call types pass' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s j -l threads -d 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l batch-size -d 'Events per request [default: Amberflo 100, Orb 500, Kable 500]' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l limit -d 'Read at most N events, settle them and stop (with --dry-run: a look at the first few)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l format -d 'How a dry run writes requests' -r -f -a "ndjson\t'One JSON line per request: destination, method, url, headers, body, events'
curl\t'A runnable curl command per request'
http\t'Raw HTTP/1.1 requests, as `http --offline` prints them'
records\t'One JSON line per event: source, line, its translated record, and the request it travels in'"
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s o -l output -d 'Where a dry run writes [default: standard output]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l rejects -d 'Write every event that is not delivered, with its reason, source and line, to PATH (NDJSON that `segrelay send` reads back)' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l summary -d 'Write the run\'s summary as JSON to PATH' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l timeout -d 'Connect and read timeout for each request (e.g. 30s, 500ms, 2m)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l max-retries -d 'Retries of a request that failed in a way worth retrying (timeouts, connection errors, 408, 429, 5xx except 501; Orb also 409)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l max-retry-wait -d 'The longest segrelay waits before one retry, whatever Retry-After asks' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l concurrency -d 'Requests in flight at once (threads); the checkpoint still only moves past a batch once every earlier one is settled' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l checkpoint -d 'Record in PATH how far the input is settled, and what decides which events are sent (filters, destination, settings); resume from it when PATH exists, under the same ones. Not with --dry-run: a dry run sends nothing, so it is simply run again' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-backfill-window -d 'Orb: the longest backfill window, in days (Orb allows 31)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-close-after -d 'Orb: each backfill\'s close time, sent when it is created: Orb closes it by itself this long after its creation, closed by segrelay or not (Orb\'s own default is one day)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-poll-interval -d 'Orb: how often --orb-wait asks' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-wait-timeout -d 'Orb: how long --orb-wait waits for one backfill' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l rate -d 'At most N requests per second (retries included)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l no-sign-request -d 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI\'s option'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s q -l quiet -d 'Print only errors on standard error, and why and where a run stopped'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l fail-fast -d 'Stop at the first rejected event instead of going on'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l dry-run -d 'Translate and batch, then write the requests instead of sending them (no network, no keys needed)'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l show-secrets -d 'Write API keys in dry-run output instead of *** or $VAR'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l restart -d 'Ignore the checkpoint there is and start over'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l ensure-customers -d 'Amberflo: before the first meter record of each customer, look it up and create it when missing (as `ensure_customers = true` in the settings)'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-backfill -d 'Orb: send the events older than Orb\'s grace period through backfills, one per window of at most --orb-backfill-window days, the others through ordinary ingest, and reject those more than 5 minutes ahead (file inputs only)'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-replace-existing -d 'Orb: make each backfill replace every event of its window (all customers, live events included) with the events sent. Destructive'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-allow-overlap -d 'Orb: create backfills even over windows that earlier backfills (not reverted) already cover, keeping their events. Risky: Orb dedupes idempotency keys only within its grace period, so an event both hold may be counted twice. Without it (or --orb-replace-existing) such a run is refused'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-no-close -d 'Orb: do not close each backfill once filled; Orb then closes it by itself at its close time (see --orb-close-after), and reflects it'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -l orb-wait -d 'Orb: after closing a backfill, wait until Orb has reflected it before the next'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s v -l verbose -d 'Say more: every event not sent with its reason, and each request with its status and time'
complete -c segrelay -n "__fish_segrelay_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -s c -l config -d 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -s d -l destination -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l max-line-bytes -d 'Reject input lines longer than this many bytes (suffixes K, M)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l since -d 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l until -d 'Only events before TIME (RFC 3339, or a date: midnight UTC)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l received-since -d 'Segment\'s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l received-until -d 'Segment\'s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l types -d 'Only these call types (comma-separated: track, page, screen, identify, group, alias)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l events -d 'Only track events with these names (comma-separated); other call types pass' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -s j -l threads -d 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l batch-size -d 'Events per request [default: Amberflo 100, Orb 500, Kable 500]' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l limit -d 'Read at most N events, settle them and stop (with --dry-run: a look at the first few)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l rejects -d 'Write every event that would be rejected, with its reason, source and line, to PATH' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l summary -d 'Write the summary as JSON to PATH' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l no-sign-request -d 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI\'s option'
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -s q -l quiet -d 'Print only errors on standard error, and why and where a run stopped'
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -l fail-fast -d 'Stop at the first rejected event instead of going on'
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -s v -l verbose -d 'Say more: every event that would not be sent, with its reason'
complete -c segrelay -n "__fish_segrelay_using_subcommand check" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -s c -l config -d 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -s d -l destination -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l max-line-bytes -d 'Reject input lines longer than this many bytes (suffixes K, M)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l since -d 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l until -d 'Only events before TIME (RFC 3339, or a date: midnight UTC)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l received-since -d 'Segment\'s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l received-until -d 'Segment\'s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l types -d 'Only these call types (comma-separated: track, page, screen, identify, group, alias)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l events -d 'Only track events with these names (comma-separated); other call types pass' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -s j -l threads -d 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l timeout -d 'Connect and read timeout for each request (e.g. 30s, 500ms, 2m)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l max-retries -d 'Retries of a request that failed in a way worth retrying (timeouts, connection errors, 408, 429, 5xx except 501; Orb also 409)' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l max-retry-wait -d 'The longest segrelay waits before one retry, whatever Retry-After asks' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l no-sign-request -d 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI\'s option'
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -s q -l quiet -d 'Print only errors on standard error, and why and where a run stopped'
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -l json -d 'Print the comparison as JSON'
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -s v -l verbose -d 'Say more'
complete -c segrelay -n "__fish_segrelay_using_subcommand verify" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand destinations" -s c -l config -d 'The settings file whose destinations to list [default: as for send]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand destinations" -l json -d 'Print as JSON'
complete -c segrelay -n "__fish_segrelay_using_subcommand destinations" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand init" -s d -l destination -d 'Only this destination type [default: all three]' -r -f -a "amberflo\t''
orb\t''
kable\t''"
complete -c segrelay -n "__fish_segrelay_using_subcommand init" -l out -d 'Where to write; `-` is standard output. An existing file is never overwritten' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand init" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand completions" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and not __fish_seen_subcommand_from backfills help" -s c -l config -d 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and not __fish_seen_subcommand_from backfills help" -s d -l destination -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and not __fish_seen_subcommand_from backfills help" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and not __fish_seen_subcommand_from backfills help" -f -a "backfills" -d 'List, show, close or revert Orb backfills'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and not __fish_seen_subcommand_from backfills help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -l timeout -d 'Connect and read timeout for each request' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -s c -l config -d 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -s d -l destination -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination' -r
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -f -a "list" -d 'List the account\'s backfills, newest last'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -f -a "show" -d 'Print one backfill as JSON'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -f -a "close" -d 'Close a backfill: Orb then reflects its events'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -f -a "revert" -d 'Revert a backfill: Orb removes its events (and restores what it replaced)'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from backfills" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from help" -f -a "backfills" -d 'List, show, close or revert Orb backfills'
complete -c segrelay -n "__fish_segrelay_using_subcommand orb; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c segrelay -n "__fish_segrelay_using_subcommand man" -l out-dir -d 'Write segrelay.1 and a page for each command (segrelay-send.1, ...) into DIR' -r -F
complete -c segrelay -n "__fish_segrelay_using_subcommand man" -s h -l help -d 'Print help'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "send" -d 'Translate events and send them to a destination, or write the requests (--dry-run)'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "check" -d 'Validate the settings and the input, and count what would happen; nothing is sent'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "verify" -d 'Compare what the destination holds with what the input says it should'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "destinations" -d 'List the destination types, the calls each takes and their settings, and the destinations the settings file found configures'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "init" -d 'Write a commented starter settings file'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "completions" -d 'Print a shell completion script'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "orb" -d 'Manage Orb backfills by hand'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "man" -d 'Print the manual page (roff), or write every command\'s page to a folder'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and not __fish_seen_subcommand_from send check verify destinations init completions orb man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c segrelay -n "__fish_segrelay_using_subcommand help; and __fish_seen_subcommand_from orb" -f -a "backfills" -d 'List, show, close or revert Orb backfills'
