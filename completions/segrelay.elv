
use builtin;
use str;

set edit:completion:arg-completer[segrelay] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'segrelay'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'segrelay'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand send 'Translate events and send them to a destination, or write the requests (--dry-run)'
            cand check 'Validate the settings and the input, and count what would happen; nothing is sent'
            cand verify 'Compare what the destination holds with what the input says it should'
            cand destinations 'List the destination types, the calls each takes and their settings, and the destinations the settings file found configures'
            cand init 'Write a commented starter settings file'
            cand completions 'Print a shell completion script'
            cand orb 'Manage Orb backfills by hand'
            cand man 'Print the manual page (roff), or write every command''s page to a folder'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'segrelay;send'= {
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --max-line-bytes 'Reject input lines longer than this many bytes (suffixes K, M)'
            cand --since 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)'
            cand --until 'Only events before TIME (RFC 3339, or a date: midnight UTC)'
            cand --received-since 'Segment''s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time'
            cand --received-until 'Segment''s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost'
            cand --types 'Only these call types (comma-separated: track, page, screen, identify, group, alias)'
            cand --events 'Only track events with these names (comma-separated); other call types pass'
            cand -j 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]'
            cand --threads 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]'
            cand --batch-size 'Events per request [default: Amberflo 100, Orb 500, Kable 500]'
            cand --limit 'Read at most N events, settle them and stop (with --dry-run: a look at the first few)'
            cand --format 'How a dry run writes requests'
            cand -o 'Where a dry run writes [default: standard output]'
            cand --output 'Where a dry run writes [default: standard output]'
            cand --rejects 'Write every event that is not delivered, with its reason, source and line, to PATH (NDJSON that `segrelay send` reads back)'
            cand --summary 'Write the run''s summary as JSON to PATH'
            cand --timeout 'Connect and read timeout for each request (e.g. 30s, 500ms, 2m)'
            cand --max-retries 'Retries of a request that failed in a way worth retrying (timeouts, connection errors, 408, 429, 5xx except 501; Orb also 409)'
            cand --max-retry-wait 'The longest segrelay waits before one retry, whatever Retry-After asks'
            cand --concurrency 'Requests in flight at once (threads); the checkpoint still only moves past a batch once every earlier one is settled'
            cand --checkpoint 'Record in PATH how far the input is settled, and what decides which events are sent (filters, destination, settings); resume from it when PATH exists, under the same ones. Not with --dry-run: a dry run sends nothing, so it is simply run again'
            cand --orb-backfill-window 'Orb: the longest backfill window, in days (Orb allows 31)'
            cand --orb-close-after 'Orb: each backfill''s close time, sent when it is created: Orb closes it by itself this long after its creation, closed by segrelay or not (Orb''s own default is one day)'
            cand --orb-poll-interval 'Orb: how often --orb-wait asks'
            cand --orb-wait-timeout 'Orb: how long --orb-wait waits for one backfill'
            cand --rate 'At most N requests per second (retries included)'
            cand --no-sign-request 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI''s option'
            cand -q 'Print only errors on standard error, and why and where a run stopped'
            cand --quiet 'Print only errors on standard error, and why and where a run stopped'
            cand --fail-fast 'Stop at the first rejected event instead of going on'
            cand --dry-run 'Translate and batch, then write the requests instead of sending them (no network, no keys needed)'
            cand --show-secrets 'Write API keys in dry-run output instead of *** or $VAR'
            cand --restart 'Ignore the checkpoint there is and start over'
            cand --ensure-customers 'Amberflo: before the first meter record of each customer, look it up and create it when missing (as `ensure_customers = true` in the settings)'
            cand --orb-backfill 'Orb: send the events older than Orb''s grace period through backfills, one per window of at most --orb-backfill-window days, the others through ordinary ingest, and reject those more than 5 minutes ahead (file inputs only)'
            cand --orb-replace-existing 'Orb: make each backfill replace every event of its window (all customers, live events included) with the events sent. Destructive'
            cand --orb-allow-overlap 'Orb: create backfills even over windows that earlier backfills (not reverted) already cover, keeping their events. Risky: Orb dedupes idempotency keys only within its grace period, so an event both hold may be counted twice. Without it (or --orb-replace-existing) such a run is refused'
            cand --orb-no-close 'Orb: do not close each backfill once filled; Orb then closes it by itself at its close time (see --orb-close-after), and reflects it'
            cand --orb-wait 'Orb: after closing a backfill, wait until Orb has reflected it before the next'
            cand -v 'Say more: every event not sent with its reason, and each request with its status and time'
            cand --verbose 'Say more: every event not sent with its reason, and each request with its status and time'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'segrelay;check'= {
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --max-line-bytes 'Reject input lines longer than this many bytes (suffixes K, M)'
            cand --since 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)'
            cand --until 'Only events before TIME (RFC 3339, or a date: midnight UTC)'
            cand --received-since 'Segment''s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time'
            cand --received-until 'Segment''s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost'
            cand --types 'Only these call types (comma-separated: track, page, screen, identify, group, alias)'
            cand --events 'Only track events with these names (comma-separated); other call types pass'
            cand -j 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]'
            cand --threads 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]'
            cand --batch-size 'Events per request [default: Amberflo 100, Orb 500, Kable 500]'
            cand --limit 'Read at most N events, settle them and stop (with --dry-run: a look at the first few)'
            cand --rejects 'Write every event that would be rejected, with its reason, source and line, to PATH'
            cand --summary 'Write the summary as JSON to PATH'
            cand --no-sign-request 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI''s option'
            cand -q 'Print only errors on standard error, and why and where a run stopped'
            cand --quiet 'Print only errors on standard error, and why and where a run stopped'
            cand --fail-fast 'Stop at the first rejected event instead of going on'
            cand -v 'Say more: every event that would not be sent, with its reason'
            cand --verbose 'Say more: every event that would not be sent, with its reason'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;verify'= {
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --max-line-bytes 'Reject input lines longer than this many bytes (suffixes K, M)'
            cand --since 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)'
            cand --until 'Only events before TIME (RFC 3339, or a date: midnight UTC)'
            cand --received-since 'Segment''s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time'
            cand --received-until 'Segment''s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost'
            cand --types 'Only these call types (comma-separated: track, page, screen, identify, group, alias)'
            cand --events 'Only track events with these names (comma-separated); other call types pass'
            cand -j 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]'
            cand --threads 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]'
            cand --timeout 'Connect and read timeout for each request (e.g. 30s, 500ms, 2m)'
            cand --max-retries 'Retries of a request that failed in a way worth retrying (timeouts, connection errors, 408, 429, 5xx except 501; Orb also 409)'
            cand --max-retry-wait 'The longest segrelay waits before one retry, whatever Retry-After asks'
            cand --no-sign-request 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI''s option'
            cand -q 'Print only errors on standard error, and why and where a run stopped'
            cand --quiet 'Print only errors on standard error, and why and where a run stopped'
            cand --json 'Print the comparison as JSON'
            cand -v 'Say more'
            cand --verbose 'Say more'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;destinations'= {
            cand -c 'The settings file whose destinations to list [default: as for send]'
            cand --config 'The settings file whose destinations to list [default: as for send]'
            cand --json 'Print as JSON'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;init'= {
            cand -d 'Only this destination type [default: all three]'
            cand --destination 'Only this destination type [default: all three]'
            cand --out 'Where to write; `-` is standard output. An existing file is never overwritten'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;completions'= {
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;orb'= {
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand -h 'Print help'
            cand --help 'Print help'
            cand backfills 'List, show, close or revert Orb backfills'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'segrelay;orb;backfills'= {
            cand --timeout 'Connect and read timeout for each request'
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand -h 'Print help'
            cand --help 'Print help'
            cand list 'List the account''s backfills, newest last'
            cand show 'Print one backfill as JSON'
            cand close 'Close a backfill: Orb then reflects its events'
            cand revert 'Revert a backfill: Orb removes its events (and restores what it replaced)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'segrelay;orb;backfills;list'= {
            cand --timeout 'Connect and read timeout for each request'
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --json 'Print Orb''s JSON objects, one per line'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;orb;backfills;show'= {
            cand --timeout 'Connect and read timeout for each request'
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;orb;backfills;close'= {
            cand --timeout 'Connect and read timeout for each request'
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;orb;backfills;revert'= {
            cand --timeout 'Connect and read timeout for each request'
            cand -c 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand --config 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]'
            cand -d 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand --destination 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination'
            cand -y 'Revert without asking; needed when standard input is not a terminal'
            cand --yes 'Revert without asking; needed when standard input is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;orb;backfills;help'= {
            cand list 'List the account''s backfills, newest last'
            cand show 'Print one backfill as JSON'
            cand close 'Close a backfill: Orb then reflects its events'
            cand revert 'Revert a backfill: Orb removes its events (and restores what it replaced)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'segrelay;orb;backfills;help;list'= {
        }
        &'segrelay;orb;backfills;help;show'= {
        }
        &'segrelay;orb;backfills;help;close'= {
        }
        &'segrelay;orb;backfills;help;revert'= {
        }
        &'segrelay;orb;backfills;help;help'= {
        }
        &'segrelay;orb;help'= {
            cand backfills 'List, show, close or revert Orb backfills'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'segrelay;orb;help;backfills'= {
            cand list 'List the account''s backfills, newest last'
            cand show 'Print one backfill as JSON'
            cand close 'Close a backfill: Orb then reflects its events'
            cand revert 'Revert a backfill: Orb removes its events (and restores what it replaced)'
        }
        &'segrelay;orb;help;backfills;list'= {
        }
        &'segrelay;orb;help;backfills;show'= {
        }
        &'segrelay;orb;help;backfills;close'= {
        }
        &'segrelay;orb;help;backfills;revert'= {
        }
        &'segrelay;orb;help;help'= {
        }
        &'segrelay;man'= {
            cand --out-dir 'Write segrelay.1 and a page for each command (segrelay-send.1, ...) into DIR'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'segrelay;help'= {
            cand send 'Translate events and send them to a destination, or write the requests (--dry-run)'
            cand check 'Validate the settings and the input, and count what would happen; nothing is sent'
            cand verify 'Compare what the destination holds with what the input says it should'
            cand destinations 'List the destination types, the calls each takes and their settings, and the destinations the settings file found configures'
            cand init 'Write a commented starter settings file'
            cand completions 'Print a shell completion script'
            cand orb 'Manage Orb backfills by hand'
            cand man 'Print the manual page (roff), or write every command''s page to a folder'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'segrelay;help;send'= {
        }
        &'segrelay;help;check'= {
        }
        &'segrelay;help;verify'= {
        }
        &'segrelay;help;destinations'= {
        }
        &'segrelay;help;init'= {
        }
        &'segrelay;help;completions'= {
        }
        &'segrelay;help;orb'= {
            cand backfills 'List, show, close or revert Orb backfills'
        }
        &'segrelay;help;orb;backfills'= {
            cand list 'List the account''s backfills, newest last'
            cand show 'Print one backfill as JSON'
            cand close 'Close a backfill: Orb then reflects its events'
            cand revert 'Revert a backfill: Orb removes its events (and restores what it replaced)'
        }
        &'segrelay;help;orb;backfills;list'= {
        }
        &'segrelay;help;orb;backfills;show'= {
        }
        &'segrelay;help;orb;backfills;close'= {
        }
        &'segrelay;help;orb;backfills;revert'= {
        }
        &'segrelay;help;man'= {
        }
        &'segrelay;help;help'= {
        }
    ]
    $completions[$command]
}
