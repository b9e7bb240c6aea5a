#!/usr/bin/env python3
"""Writes the hostile-input corpus: tests/corpus/bad/ (every payload must be refused with
a named field and reason) and tests/corpus/hostile-valid/ (SQL, shell and markup
metacharacters in every string field: data, stored verbatim, never interpreted).

Deterministic; run it again after changing a case and commit the files it writes."""
import json, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
BAD = os.path.join(HERE, "bad")
VALID = os.path.join(HERE, "hostile-valid")

def native(**overrides):
    base = {"opx_signal_version": 1, "alarm": "corpus:orders-5xx", "state": "ALARM",
            "time": "2026-11-24T03:00:09.512Z", "environment": "prod",
            "service": "orders", "severity": "SEV2"}
    for key, value in overrides.items():
        if value is DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base

DROP = object()

def eventbridge(**detail_overrides):
    event = {"version": "0", "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
             "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
             "account": "123456789012", "time": "2026-11-24T03:00:10Z", "region": "us-east-1",
             "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-api-5xx"],
             "detail": {"alarmName": "orders-api-5xx",
                        "state": {"value": "ALARM", "reason": "Threshold Crossed",
                                  "timestamp": "2026-11-24T03:00:09.512+0000"},
                        "previousState": {"value": "OK", "reason": "ok",
                                          "timestamp": "2026-11-20T11:14:02.116+0000"},
                        "configuration": {"description": "5xx"}}}
    for key, value in detail_overrides.items():
        if key == "top":
            event.update(value)
        elif value is DROP:
            event["detail"].pop(key, None)
        else:
            event["detail"][key] = value
    return event

def alertmanager(alerts):
    return {"version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "opx", "groupLabels": {"alertname": "X"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": alerts}

def am_alert(**overrides):
    alert = {"status": "firing", "labels": {"alertname": "HighErrorRate", "service": "orders",
             "environment": "prod", "severity": "critical"}, "annotations": {"summary": "x"},
             "startsAt": "2026-11-24T03:00:09.512Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prom", "fingerprint": "a1b2c3d4e5f60718"}
    alert.update(overrides)
    return alert

def sns(message):
    return {"Type": "Notification", "MessageId": "5b7e2b5e-1c84-5d2e-9b2b-1c7b5f0e0c11",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms", "Subject": "ALARM",
            "Message": message, "Timestamp": "2026-11-24T03:00:10.123Z",
            "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://x",
            "UnsubscribeURL": "https://x"}

cases = {}
def add(name, payload):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload).encode()
    elif isinstance(payload, str):
        payload = payload.encode()
    assert name not in cases, name
    cases[name] = payload

valid_native = json.dumps(native()).encode()
valid_eb = json.dumps(eventbridge()).encode()
# Truncated JSON at many points.
for cut in (1, 2, 10, 25, 50, 80, 120, len(valid_native) - 1):
    add(f"truncated-native-{cut:03}", valid_native[:cut])
for cut in (5, 60, 200, 400, len(valid_eb) - 2):
    add(f"truncated-eventbridge-{cut:03}", valid_eb[:cut])
# Not JSON at all.
for name, text in [("just-null", "null"), ("just-number", "42"),
                   ("just-string", "\"alarm\""), ("just-true", "true"), ("xml", "<alarm/>"),
                   ("yaml", "alarm: x\nstate: ALARM\n"), ("nan", "{\"opx_signal_version\": NaN}"),
                   ("single-quotes", "{'alarm': 'x'}"), ("trailing-comma", "{\"alarm\": \"x\",}"),
                   ("comment", "{/* c */ \"alarm\": \"x\"}"), ("bom-garbage", "\ufeff\ufeff{}")]:
    add(f"not-json-{name}", text)
add("empty-array-element", "[1]")
# Wrong types for every native field.
for field, values in {"alarm": [1, True, None, [], {}], "state": [1, True, None, ["ALARM"]],
                      "time": [1795490409512, None, True, {}], "environment": [1, [], None],
                      "service": [2, {}, None], "severity": [2, None, ["SEV1"]],
                      "opx_signal_version": ["1", 1.5, None, -1],
                      "labels": ["x", [1], {"k": 1}, {"k": {"n": "v"}}],
                      "summary": [7, ["s"]]}.items():
    for index, value in enumerate(values):
        add(f"native-wrong-type-{field}-{index}", native(**{field: value}))
# Missing required fields.
for field in ("alarm", "state", "time", "environment", "service", "severity"):
    add(f"native-missing-{field}", native(**{field: DROP}))
# Huge strings (one field past its limit; one payload past the payload limit).
add("native-huge-alarm", native(alarm="a" * 4096))
add("native-huge-service", native(service="s" * 10_000))
add("native-huge-environment", native(environment="e" * 600))
add("payload-over-limit", native(summary="x" * (256 * 1024)))
add("native-huge-label-key", native(labels={"k" * 5000: "v"}))
# Deep nesting.
add("deep-array-nesting", "[" * 2_000 + "]" * 2_000)
add("deep-object-nesting", "{\"a\":" * 1_000 + "1" + "}" * 1_000)
add("native-deep-label", native(labels={"k": json.loads("[" * 200 + "]" * 200)}))
# Invalid UTF-8 and control characters.
add("invalid-utf8-in-string", valid_native.replace(b"orders", b"ord\xff\xfers"))
add("invalid-utf8-overlong", valid_native.replace(b"orders", b"\xc0\xafrders"))
add("invalid-utf8-surrogate", valid_native.replace(b"orders", b"\xed\xa0\x80rders"))
add("lone-surrogate-escape", valid_native.replace(b"orders", b"\\ud800rders"))
add("native-control-char-service", native(service="ord\u0000ers"))
add("native-newline-alarm", native(alarm="a\nb"))
add("native-escape-sequence", native(environment="\u001b[31mprod"))
# Timestamps out of range or malformed.
for index, time in enumerate(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
                              "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24T25:00:00Z",
                              "2026-11-24T23:59:60Z", "2026-11-24T03:00:09", "2026-11-24T03:00:09+25:00",
                              "2026-11-24T03:00:09.Z", "yesterday", "", "2026-11-24T03:00:09.512+0000x",
                              "+002026-11-24T03:00:09Z", "2026-W48-2T03:00:09Z"]):
    add(f"native-bad-time-{index:02}", native(time=time))
add("eventbridge-timestamp-garbage", eventbridge(state={"value": "ALARM", "reason": "r",
                                                       "timestamp": "not a time"}))
# Unknown states and severities.
for index, state in enumerate(["ALRM", "", "alarm ", "PENDING", "FIRING", "0"]):
    add(f"native-unknown-state-{index}", native(state=state))
for index, severity in enumerate(["SEV0", "SEV5", "sev1", "CRITICAL", "", "SEV1 "]):
    add(f"native-unknown-severity-{index}", native(severity=severity))
add("eventbridge-unknown-state", eventbridge(state={"value": "BROKEN", "reason": "r",
                                                    "timestamp": "2026-11-24T03:00:09.512+0000"}))
add("eventbridge-missing-detail", eventbridge(top={"detail": None}))
add("eventbridge-resources-wrong-type", eventbridge(top={"resources": "arn:x"}))
add("eventbridge-resource-not-an-arn", eventbridge(top={"resources": ["orders-api-5xx"]}))
add("eventbridge-account-mismatch", eventbridge(top={"account": "999999999999"}))
# Oversized batches.
# One more alert or record than a payload may carry, each small, so the count is the problem.
add("alertmanager-too-many-alerts", alertmanager([
    {"status": "firing", "labels": {"alertname": f"A{i}", "service": "orders"},
     "startsAt": "2026-11-24T03:00:09Z", "fingerprint": f"{i:016x}"} for i in range(1001)]))
add("sns-too-many-records", {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{}"}}] * 101})
add("alertmanager-alerts-not-a-list", alertmanager({"a": 1}))
add("alertmanager-alert-bad-status", alertmanager([am_alert(status="exploded")]))
add("alertmanager-alert-bad-time", alertmanager([am_alert(startsAt="soon")]))
add("alertmanager-alert-labels-wrong", alertmanager([am_alert(labels=["a"])]))
add("sns-message-not-json", sns("ALARM: orders-api-5xx in US East"))
add("sns-message-wrong-type", sns({"AlarmName": "x"}))
add("sns-message-empty-alarm", sns(json.dumps({"AlarmName": "", "NewStateValue": "ALARM"})))
add("alarm-action-missing-state", {"source": "aws.cloudwatch", "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x",
                                    "accountId": "123456789012", "time": "2026-11-24T03:00:10.000+0000",
                                    "region": "us-east-1", "alarmData": {"alarmName": "x"}})
add("unknown-shape", {"hello": "world"})
add("duplicate-keys", '{"opx_signal_version":1,"alarm":"a","alarm":"b","state":"ALARM","time":"2026-11-24T03:00:09Z","environment":"prod","service":"orders","severity":"SEV2"}')

shutil.rmtree(BAD, ignore_errors=True)
os.makedirs(BAD)
for name, payload in sorted(cases.items()):
    with open(os.path.join(BAD, name + ".json"), "wb") as out:
        out.write(payload)

META = "'; DROP TABLE events; -- $(rm -rf /) `id` | sh && <script>x</script> %s %n ${jndi:ldap://x} \\\" \u202e"
shutil.rmtree(VALID, ignore_errors=True)
os.makedirs(VALID)
for field in ("alarm", "alarm_name", "environment", "service", "summary"):
    payload = native(alarm=f"corpus:hostile-{field}")
    payload[field] = f"{field}:{META}"
    with open(os.path.join(VALID, f"metacharacters-in-{field}.json"), "w") as out:
        json.dump(payload, out)
with open(os.path.join(VALID, "metacharacters-in-labels.json"), "w") as out:
    json.dump(native(alarm="corpus:hostile-labels", labels={META: META}), out)
print(f"{len(cases)} refused payloads, {len(os.listdir(VALID))} hostile but valid payloads")
