# Roughly segrelay's Orb translation, one output line per event (for `jq -c -f`):
# track calls only, the integrations selector, ids as text, the first usable
# time normalised to UTC with milliseconds, and the mapped properties of
# samples/segrelay.toml (value, region, model, usage.tokens -> tokens).
def millis: if . == null then ".000" else (. + "000")[0:4] end;
def offset_seconds:
  if . == "Z" or . == "z" or . == "" then 0
  else capture("^(?<s>[+-])(?<h>[0-9]{2}):?(?<m>[0-9]{2})$")
    | ((.h | tonumber) * 3600 + (.m | tonumber) * 60) * (if .s == "-" then -1 else 1 end)
  end;
def orb_time:
  capture("^(?<d>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?<t>[0-9]{2}:[0-9]{2}:[0-9]{2})(?<f>\\.[0-9]+)?(?<z>.*)$")
  | (((.d + "T" + .t + "Z") | fromdateiso8601) - (.z | offset_seconds) | todateiso8601 | .[0:19])
    + (.f | millis) + "Z";
def id_text: if type == "number" then tostring elif . == "" then null else . end;
def enabled:
  if (.integrations | type) != "object" then true
  elif .integrations | has("Orb") then .integrations.Orb != false and .integrations.Orb != null
  else .integrations.All != false
  end;
select(.type == "track" and enabled and (.userId | id_text) != null)
| {
    idempotency_key: (.messageId | id_text),
    external_customer_id: (.userId | id_text),
    event_name: .event,
    timestamp: ([.timestamp, .originalTimestamp, .receivedAt] | map(select(. != null and . != "")) | first | orb_time),
    properties: (
      {value: .properties.value, region: .properties.region, model: .properties.model, tokens: .properties.usage.tokens}
      | with_entries(select(.value != null))
    )
  }
