"""Signs HTTP requests with botocore's SigV4 signer, for the API's interoperability test.

Reads a JSON object from stdin: {"access_key_id", "secret_access_key", "region",
"requests": [{"method", "url", "body", "headers": {...}}]}, and writes a JSON list with,
for each request, the headers botocore's SigV4Auth adds (Authorization, X-Amz-Date) on top
of the given ones. The URL carries the query as written, which is how botocore signs a
request made from a URL (its canonical query is then the pairs sorted, bytes unchanged).
"""

import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main() -> None:
    job = json.load(sys.stdin)
    credentials = Credentials(job["access_key_id"], job["secret_access_key"])
    signer = SigV4Auth(credentials, "execute-api", job["region"])
    signed = []
    for spec in job["requests"]:
        request = AWSRequest(
            method=spec["method"],
            url=spec["url"],
            data=spec["body"].encode(),
            headers=spec["headers"],
        )
        signer.add_auth(request)
        signed.append({name: value for name, value in request.headers.items()})
    json.dump(signed, sys.stdout)


if __name__ == "__main__":
    main()
