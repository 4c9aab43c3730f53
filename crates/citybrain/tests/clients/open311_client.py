"""Drives citybrain's Open311 GeoReport v2 endpoint with a real client library,
`georeport` (PyPI), in JSON and XML, plus plain form POSTs (the library reads only).

usage: open311_client.py BASE_URL API_KEY   (BASE_URL ends in /open311/v2)
Exits non-zero on the first failed check.
"""
import sys

import requests
from georeport import GeoReport

base, key = sys.argv[1], sys.argv[2]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


for fmt in ("json", "xml"):
    client = GeoReport(base, api_key=key, output_format=fmt)
    services = client.get_service_list()
    # xmltodict gives a dict for a single element and a list for several.
    if isinstance(services, dict):
        services = [services]
    codes = [s["service_code"] for s in services]
    check("pothole" in codes and "streetlight" in codes, f"{fmt}: service list {codes}")
    definition = client.get_service_definition("pothole")
    attrs = definition["attributes"]
    if fmt == "xml":
        attrs = attrs["attribute"]
        attrs = attrs if isinstance(attrs, list) else [attrs]
    check(attrs[0]["code"] == "size", f"{fmt}: service definition")

# Create through the form POST the spec describes.
r = requests.post(
    f"{base}/requests.json",
    data={
        "api_key": key,
        "service_code": "pothole",
        "lat": "39.91",
        "long": "116.40",
        "attribute[size]": "l",
        "description": "Deep hole near the school",
    },
)
check(r.status_code == 201, f"POST requests.json answered {r.status_code}: {r.text}")
sid = r.json()[0]["service_request_id"]
r = requests.post(f"{base}/requests.xml", data={"api_key": "wrong", "service_code": "pothole", "lat": "1", "long": "1"})
check(r.status_code == 403 and "<errors><error><code>403</code>" in r.text, "bad key: 403 with an XML error")

for fmt in ("json", "xml"):
    client = GeoReport(base, api_key=key, output_format=fmt)
    one = client.get_service_request(sid)
    check(one["service_request_id"] == sid and one["status"] == "open", f"{fmt}: request {sid} is open")
    many = client.get_service_requests(service_code="pothole", status="open")
    if isinstance(many, dict):
        many = [many]
    check(any(m["service_request_id"] == sid for m in many), f"{fmt}: found by service_code and status")
print("all Open311 client checks passed")
