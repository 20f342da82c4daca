#!/usr/bin/env python3
"""A photoclaim client in Python, and a check that one works.

Against a running server (plaintext HOST:PORT) it:

1. registers the reference case's first claim (tests/data/kazbat-2022.json);
2. reads the claim's verification status (UNVERIFIED, same etag);
3. sends a claim without a language and reads the INVALID_ARGUMENT's
   google.rpc.BadRequest details, which must name `claim.language`.

It prints what it does and exits 1 if anything is not as expected (2 on bad
usage). The stubs come from grpc_tools.protoc (see README.md).

    python client.py [--stubs DIR] [HOST:PORT]

HOST:PORT defaults to $PHOTOCLAIM_SERVER, then 127.0.0.1:50051. When
$PHOTOCLAIM_TOKEN is set, every call sends `authorization: Bearer <token>`
(the key needs the INGEST role).
"""

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REFERENCE_CASE = REPO / "tests" / "data" / "kazbat-2022.json"


class CheckFailed(Exception):
    """Something the server did is not what the API promises."""


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "server",
        nargs="?",
        default=os.environ.get("PHOTOCLAIM_SERVER", "127.0.0.1:50051"),
        help="HOST:PORT of a plaintext server (default: $PHOTOCLAIM_SERVER or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--stubs",
        default=os.environ.get("PHOTOCLAIM_STUBS", str(HERE / "gen")),
        help="directory of the generated stubs (default: $PHOTOCLAIM_STUBS or ./gen)",
    )
    args = parser.parse_args()
    for scheme in ("http://", "https://"):
        if args.server.startswith(scheme):
            parser.error(f"give HOST:PORT, not a URL: {args.server}")
    return args


def main():
    args = parse_args()
    sys.path.insert(0, args.stubs)
    try:
        from photoclaim.v1 import claim_service_pb2, claim_service_pb2_grpc, resources_pb2
    except ImportError as err:
        sys.exit(f"client.py: cannot import the stubs from {args.stubs} ({err}); generate them first (README.md)")

    token = os.environ.get("PHOTOCLAIM_TOKEN", "")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    case = json.loads(REFERENCE_CASE.read_text(encoding="utf-8"))
    first, image = case["claims"][0], case["image"]

    def reference_claim():
        claim = resources_pb2.Claim(
            claim_text=first["claim_text"],
            claimant=first["claimant"],
            language=first["language"],
            image=resources_pb2.Image(
                source_url=image["source_url"],
                credit=image["credit"],
                publisher=image["publisher"],
                location=image["location"],
                caption=image["caption"],
            ),
        )
        claim.image.published_time.FromJsonString(image["published_time"])
        return claim

    with grpc.insecure_channel(args.server) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            raise CheckFailed(f"no server answers at {args.server}")
        stub = claim_service_pb2_grpc.ClaimServiceStub(channel)

        # 1. Register (idempotent with request_id: a retry would be replayed).
        registered = stub.RegisterClaim(
            claim_service_pb2.RegisterClaimRequest(request_id=str(uuid.uuid4()), claim=reference_claim()),
            metadata=metadata,
            timeout=10,
        )
        claim = registered.claim
        print(f"registered {claim.name}: {claim.claim_text!r} (etag {claim.etag})")
        expect(claim.name.startswith("claims/"), f"a claim name, got {claim.name!r}")
        expect(claim.claim_text == first["claim_text"], "the claim text as sent")
        expect(not registered.replayed, "a new request_id is not a replay")

        # 2. Its verification status.
        status = stub.GetVerificationStatus(
            claim_service_pb2.GetVerificationStatusRequest(claim=claim.name),
            metadata=metadata,
            timeout=10,
        )
        state = resources_pb2.VerificationState.Name(status.state)
        print(f"status of {status.claim}: {state}, {status.official_response_count} responses, etag {status.etag}")
        expect(status.claim == claim.name, "the status names the claim")
        expect(status.state == resources_pb2.VERIFICATION_STATE_UNVERIFIED, f"UNVERIFIED, got {state}")
        expect(status.etag == claim.etag, "the etag RegisterClaim returned")

        # 3. A bad request: the details name the field.
        bad = reference_claim()
        bad.language = ""
        try:
            stub.RegisterClaim(
                claim_service_pb2.RegisterClaimRequest(claim=bad),
                metadata=metadata,
                timeout=10,
            )
        except grpc.RpcError as err:
            expect(
                err.code() == grpc.StatusCode.INVALID_ARGUMENT,
                f"INVALID_ARGUMENT, got {err.code().name}: {err.details()}",
            )
            status = rpc_status.from_call(err)
            expect(status is not None, "google.rpc.Status in grpc-status-details-bin")
            fields = []
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad_request = error_details_pb2.BadRequest()
                    detail.Unpack(bad_request)
                    for violation in bad_request.field_violations:
                        print(f"refused as expected: {violation.field}: {violation.description}")
                        fields.append(violation.field)
            expect(fields == ["claim.language"], f"one violation naming claim.language, got {fields}")
        else:
            raise CheckFailed("a claim without a language was accepted")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as err:
        sys.exit(f"client.py: FAILED: {err}")
    except grpc.RpcError as err:
        sys.exit(f"client.py: FAILED: {err.code().name}: {err.details()}")
