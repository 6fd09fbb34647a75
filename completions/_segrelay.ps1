
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'segrelay' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'segrelay'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'segrelay' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Translate events and send them to a destination, or write the requests (--dry-run)')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the settings and the input, and count what would happen; nothing is sent')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Compare what the destination holds with what the input says it should')
            [CompletionResult]::new('destinations', 'destinations', [CompletionResultType]::ParameterValue, 'List the destination types, the calls each takes and their settings, and the destinations the settings file found configures')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Write a commented starter settings file')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('orb', 'orb', [CompletionResultType]::ParameterValue, 'Manage Orb backfills by hand')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), or write every command''s page to a folder')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'segrelay;send' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Reject input lines longer than this many bytes (suffixes K, M)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only events before TIME (RFC 3339, or a date: midnight UTC)')
            [CompletionResult]::new('--received-since', '--received-since', [CompletionResultType]::ParameterName, 'Segment''s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time')
            [CompletionResult]::new('--received-until', '--received-until', [CompletionResultType]::ParameterName, 'Segment''s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost')
            [CompletionResult]::new('--types', '--types', [CompletionResultType]::ParameterName, 'Only these call types (comma-separated: track, page, screen, identify, group, alias)')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Only track events with these names (comma-separated); other call types pass')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Events per request [default: Amberflo 100, Orb 500, Kable 500]')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Read at most N events, settle them and stop (with --dry-run: a look at the first few)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'How a dry run writes requests')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where a dry run writes [default: standard output]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Where a dry run writes [default: standard output]')
            [CompletionResult]::new('--rejects', '--rejects', [CompletionResultType]::ParameterName, 'Write every event that is not delivered, with its reason, source and line, to PATH (NDJSON that `segrelay send` reads back)')
            [CompletionResult]::new('--summary', '--summary', [CompletionResultType]::ParameterName, 'Write the run''s summary as JSON to PATH')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request (e.g. 30s, 500ms, 2m)')
            [CompletionResult]::new('--max-retries', '--max-retries', [CompletionResultType]::ParameterName, 'Retries of a request that failed in a way worth retrying (timeouts, connection errors, 408, 429, 5xx except 501; Orb also 409)')
            [CompletionResult]::new('--max-retry-wait', '--max-retry-wait', [CompletionResultType]::ParameterName, 'The longest segrelay waits before one retry, whatever Retry-After asks')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Requests in flight at once (threads); the checkpoint still only moves past a batch once every earlier one is settled')
            [CompletionResult]::new('--checkpoint', '--checkpoint', [CompletionResultType]::ParameterName, 'Record in PATH how far the input is settled, and what decides which events are sent (filters, destination, settings); resume from it when PATH exists, under the same ones. Not with --dry-run: a dry run sends nothing, so it is simply run again')
            [CompletionResult]::new('--orb-backfill-window', '--orb-backfill-window', [CompletionResultType]::ParameterName, 'Orb: the longest backfill window, in days (Orb allows 31)')
            [CompletionResult]::new('--orb-close-after', '--orb-close-after', [CompletionResultType]::ParameterName, 'Orb: each backfill''s close time, sent when it is created: Orb closes it by itself this long after its creation, closed by segrelay or not (Orb''s own default is one day)')
            [CompletionResult]::new('--orb-poll-interval', '--orb-poll-interval', [CompletionResultType]::ParameterName, 'Orb: how often --orb-wait asks')
            [CompletionResult]::new('--orb-wait-timeout', '--orb-wait-timeout', [CompletionResultType]::ParameterName, 'Orb: how long --orb-wait waits for one backfill')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'At most N requests per second (retries included)')
            [CompletionResult]::new('--no-sign-request', '--no-sign-request', [CompletionResultType]::ParameterName, 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI''s option')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on standard error, and why and where a run stopped')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on standard error, and why and where a run stopped')
            [CompletionResult]::new('--fail-fast', '--fail-fast', [CompletionResultType]::ParameterName, 'Stop at the first rejected event instead of going on')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Translate and batch, then write the requests instead of sending them (no network, no keys needed)')
            [CompletionResult]::new('--show-secrets', '--show-secrets', [CompletionResultType]::ParameterName, 'Write API keys in dry-run output instead of *** or $VAR')
            [CompletionResult]::new('--restart', '--restart', [CompletionResultType]::ParameterName, 'Ignore the checkpoint there is and start over')
            [CompletionResult]::new('--ensure-customers', '--ensure-customers', [CompletionResultType]::ParameterName, 'Amberflo: before the first meter record of each customer, look it up and create it when missing (as `ensure_customers = true` in the settings)')
            [CompletionResult]::new('--orb-backfill', '--orb-backfill', [CompletionResultType]::ParameterName, 'Orb: send the events older than Orb''s grace period through backfills, one per window of at most --orb-backfill-window days, the others through ordinary ingest, and reject those more than 5 minutes ahead (file inputs only)')
            [CompletionResult]::new('--orb-replace-existing', '--orb-replace-existing', [CompletionResultType]::ParameterName, 'Orb: make each backfill replace every event of its window (all customers, live events included) with the events sent. Destructive')
            [CompletionResult]::new('--orb-allow-overlap', '--orb-allow-overlap', [CompletionResultType]::ParameterName, 'Orb: create backfills even over windows that earlier backfills (not reverted) already cover, keeping their events. Risky: Orb dedupes idempotency keys only within its grace period, so an event both hold may be counted twice. Without it (or --orb-replace-existing) such a run is refused')
            [CompletionResult]::new('--orb-no-close', '--orb-no-close', [CompletionResultType]::ParameterName, 'Orb: do not close each backfill once filled; Orb then closes it by itself at its close time (see --orb-close-after), and reflects it')
            [CompletionResult]::new('--orb-wait', '--orb-wait', [CompletionResultType]::ParameterName, 'Orb: after closing a backfill, wait until Orb has reflected it before the next')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more: every event not sent with its reason, and each request with its status and time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more: every event not sent with its reason, and each request with its status and time')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'segrelay;check' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Reject input lines longer than this many bytes (suffixes K, M)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only events before TIME (RFC 3339, or a date: midnight UTC)')
            [CompletionResult]::new('--received-since', '--received-since', [CompletionResultType]::ParameterName, 'Segment''s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time')
            [CompletionResult]::new('--received-until', '--received-until', [CompletionResultType]::ParameterName, 'Segment''s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost')
            [CompletionResult]::new('--types', '--types', [CompletionResultType]::ParameterName, 'Only these call types (comma-separated: track, page, screen, identify, group, alias)')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Only track events with these names (comma-separated); other call types pass')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Events per request [default: Amberflo 100, Orb 500, Kable 500]')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Read at most N events, settle them and stop (with --dry-run: a look at the first few)')
            [CompletionResult]::new('--rejects', '--rejects', [CompletionResultType]::ParameterName, 'Write every event that would be rejected, with its reason, source and line, to PATH')
            [CompletionResult]::new('--summary', '--summary', [CompletionResultType]::ParameterName, 'Write the summary as JSON to PATH')
            [CompletionResult]::new('--no-sign-request', '--no-sign-request', [CompletionResultType]::ParameterName, 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI''s option')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on standard error, and why and where a run stopped')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on standard error, and why and where a run stopped')
            [CompletionResult]::new('--fail-fast', '--fail-fast', [CompletionResultType]::ParameterName, 'Stop at the first rejected event instead of going on')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more: every event that would not be sent, with its reason')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more: every event that would not be sent, with its reason')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;verify' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Reject input lines longer than this many bytes (suffixes K, M)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only events at or after TIME (RFC 3339, or a date: midnight UTC)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only events before TIME (RFC 3339, or a date: midnight UTC)')
            [CompletionResult]::new('--received-since', '--received-since', [CompletionResultType]::ParameterName, 'Segment''s S3 layout: skip the day folders received wholly before TIME (RFC 3339, or a date); events they hold are not read, whatever their time')
            [CompletionResult]::new('--received-until', '--received-until', [CompletionResultType]::ParameterName, 'Segment''s S3 layout: skip the day folders received at or after TIME (RFC 3339, or a date). Faster, but events timed earlier that reached Segment late are lost')
            [CompletionResult]::new('--types', '--types', [CompletionResultType]::ParameterName, 'Only these call types (comma-separated: track, page, screen, identify, group, alias)')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Only track events with these names (comma-separated); other call types pass')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Threads that parse and translate, beside the one that batches and sends (1 to 64) [default: the number of CPUs, but no more than 8]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request (e.g. 30s, 500ms, 2m)')
            [CompletionResult]::new('--max-retries', '--max-retries', [CompletionResultType]::ParameterName, 'Retries of a request that failed in a way worth retrying (timeouts, connection errors, 408, 429, 5xx except 501; Orb also 409)')
            [CompletionResult]::new('--max-retry-wait', '--max-retry-wait', [CompletionResultType]::ParameterName, 'The longest segrelay waits before one retry, whatever Retry-After asks')
            [CompletionResult]::new('--no-sign-request', '--no-sign-request', [CompletionResultType]::ParameterName, 'Read `s3://` inputs without credentials (public buckets), as the AWS CLI''s option')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on standard error, and why and where a run stopped')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on standard error, and why and where a run stopped')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the comparison as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;destinations' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file whose destinations to list [default: as for send]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file whose destinations to list [default: as for send]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;init' {
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'Only this destination type [default: all three]')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'Only this destination type [default: all three]')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Where to write; `-` is standard output. An existing file is never overwritten')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;orb' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('backfills', 'backfills', [CompletionResultType]::ParameterValue, 'List, show, close or revert Orb backfills')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'segrelay;orb;backfills' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s backfills, newest last')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print one backfill as JSON')
            [CompletionResult]::new('close', 'close', [CompletionResultType]::ParameterValue, 'Close a backfill: Orb then reflects its events')
            [CompletionResult]::new('revert', 'revert', [CompletionResultType]::ParameterValue, 'Revert a backfill: Orb removes its events (and restores what it replaced)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'segrelay;orb;backfills;list' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print Orb''s JSON objects, one per line')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;orb;backfills;show' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;orb;backfills;close' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;orb;backfills;revert' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Connect and read timeout for each request')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('--destination', '--destination', [CompletionResultType]::ParameterName, 'A destination named in the settings; may be left out when the settings name exactly one, or set default_destination')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Revert without asking; needed when standard input is not a terminal')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Revert without asking; needed when standard input is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;orb;backfills;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s backfills, newest last')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print one backfill as JSON')
            [CompletionResult]::new('close', 'close', [CompletionResultType]::ParameterValue, 'Close a backfill: Orb then reflects its events')
            [CompletionResult]::new('revert', 'revert', [CompletionResultType]::ParameterValue, 'Revert a backfill: Orb removes its events (and restores what it replaced)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'segrelay;orb;backfills;help;list' {
            break
        }
        'segrelay;orb;backfills;help;show' {
            break
        }
        'segrelay;orb;backfills;help;close' {
            break
        }
        'segrelay;orb;backfills;help;revert' {
            break
        }
        'segrelay;orb;backfills;help;help' {
            break
        }
        'segrelay;orb;help' {
            [CompletionResult]::new('backfills', 'backfills', [CompletionResultType]::ParameterValue, 'List, show, close or revert Orb backfills')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'segrelay;orb;help;backfills' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s backfills, newest last')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print one backfill as JSON')
            [CompletionResult]::new('close', 'close', [CompletionResultType]::ParameterValue, 'Close a backfill: Orb then reflects its events')
            [CompletionResult]::new('revert', 'revert', [CompletionResultType]::ParameterValue, 'Revert a backfill: Orb removes its events (and restores what it replaced)')
            break
        }
        'segrelay;orb;help;backfills;list' {
            break
        }
        'segrelay;orb;help;backfills;show' {
            break
        }
        'segrelay;orb;help;backfills;close' {
            break
        }
        'segrelay;orb;help;backfills;revert' {
            break
        }
        'segrelay;orb;help;help' {
            break
        }
        'segrelay;man' {
            [CompletionResult]::new('--out-dir', '--out-dir', [CompletionResultType]::ParameterName, 'Write segrelay.1 and a page for each command (segrelay-send.1, ...) into DIR')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'segrelay;help' {
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Translate events and send them to a destination, or write the requests (--dry-run)')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the settings and the input, and count what would happen; nothing is sent')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Compare what the destination holds with what the input says it should')
            [CompletionResult]::new('destinations', 'destinations', [CompletionResultType]::ParameterValue, 'List the destination types, the calls each takes and their settings, and the destinations the settings file found configures')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Write a commented starter settings file')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('orb', 'orb', [CompletionResultType]::ParameterValue, 'Manage Orb backfills by hand')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), or write every command''s page to a folder')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'segrelay;help;send' {
            break
        }
        'segrelay;help;check' {
            break
        }
        'segrelay;help;verify' {
            break
        }
        'segrelay;help;destinations' {
            break
        }
        'segrelay;help;init' {
            break
        }
        'segrelay;help;completions' {
            break
        }
        'segrelay;help;orb' {
            [CompletionResult]::new('backfills', 'backfills', [CompletionResultType]::ParameterValue, 'List, show, close or revert Orb backfills')
            break
        }
        'segrelay;help;orb;backfills' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the account''s backfills, newest last')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print one backfill as JSON')
            [CompletionResult]::new('close', 'close', [CompletionResultType]::ParameterValue, 'Close a backfill: Orb then reflects its events')
            [CompletionResult]::new('revert', 'revert', [CompletionResultType]::ParameterValue, 'Revert a backfill: Orb removes its events (and restores what it replaced)')
            break
        }
        'segrelay;help;orb;backfills;list' {
            break
        }
        'segrelay;help;orb;backfills;show' {
            break
        }
        'segrelay;help;orb;backfills;close' {
            break
        }
        'segrelay;help;orb;backfills;revert' {
            break
        }
        'segrelay;help;man' {
            break
        }
        'segrelay;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
