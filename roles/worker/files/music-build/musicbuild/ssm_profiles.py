"""Print {name: tup.config text} for the SSM parameters <path>/<name>/config.

Run on the worker with its instance role: music-ssm-profiles /music/profiles [region]
"""
import json
import sys

import boto3


def main() -> int:
    path = sys.argv[1].rstrip("/")
    region = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    ssm = boto3.client("ssm", region_name=region)
    configs = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True, WithDecryption=True):
        for param in page["Parameters"]:
            rest = param["Name"][len(path) + 1:].split("/")
            if len(rest) == 2 and rest[1] == "config":
                configs[rest[0]] = param["Value"]
    if not configs:
        print(f"music-ssm-profiles: no <name>/config parameters under {path}", file=sys.stderr)
        return 1
    json.dump(configs, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
