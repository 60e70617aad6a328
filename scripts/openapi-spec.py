#!/usr/bin/env python3
"""Writes openapi/pushbridge.json, the OpenAPI 3.0 description of pushbridge's HTTP API.

The JSON file is the source of truth that tools consume; this script is how it is edited
(python dicts are easier to keep tidy than hand-written JSON). After running it, run
scripts/embed-openapi.sh so the daemon serves the same document; a test checks both agree
with each other and with the router.
"""
import json, os

def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def err(desc): return {"description": desc, "content": {"application/json": {"schema": ref("Error")}}}
def ok(desc, schema, status="200", headers=None):
    r = {"description": desc, "content": {"application/json": {"schema": schema}}}
    if headers: r["headers"] = headers
    return r
def path_param(name, desc): return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}
def query(name, desc, schema=None): return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema or {"type": "string"}}

E401 = {"401": {"$ref": "#/components/responses/Unauthorized"}}
def errors(*codes):
    table = {
        "400": err("Malformed JSON (`malformed_json`) or header (`invalid_idempotency_key`)."),
        "404": err("Unknown job, connection or archive."),
        "409": err("Conflict: `idempotency_conflict`, `connection_exists`, `invalid_state`."),
        "413": err("Body, archive, file or entry count over the configured limit."),
        "422": err("A field is invalid (`invalid_field`, the message names it) or archive content is refused."),
        "503": ok("Not ready.", ref("Health")),
    }
    out = dict(E401)
    for c in codes: out[c] = table[c]
    return out

string = {"type": "string"}
datetime = {"type": "string", "format": "date-time"}

spec = {
  "openapi": "3.0.3",
  "info": {
    "title": "pushbridge API",
    "version": "1.0.0",
    "description": "Enqueue push jobs that land generated files in Bitbucket (Cloud, Data Center, Server) as pull requests. "
                   "All errors are `{\"error\": {\"code\", \"message\"}}`. All `/v1` routes and `/metrics` need "
                   "`Authorization: Bearer <token>` (one of PUSHBRIDGE_API_TOKENS), except the OAuth callback.",
  },
  "servers": [{"url": "http://127.0.0.1:8080"}],
  "security": [{"bearer": []}],
  "paths": {
    "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "security": [],
        "responses": {"200": ok("The process serves requests.", ref("Health"))}}},
    "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: store reachable and configuration valid", "security": [],
        "responses": {"200": ok("Ready.", ref("Health")), "503": ok("Not ready; `checks` says why.", ref("Health"))}}},
    "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (text exposition format 0.0.4)",
        "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": string}}}, **E401}}},
    "/openapi.json": {"get": {"operationId": "openapiJSON", "summary": "This document as JSON", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.0 document.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/openapi.yaml": {"get": {"operationId": "openapiYAML", "summary": "This document as YAML", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.0 document.", "content": {"application/yaml": {"schema": string}}}}}},
    "/v1/connections": {
      "post": {"operationId": "createConnection", "summary": "Register a connection (secrets are stored sealed and never echoed)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ConnectionCreate")}}},
        "responses": {"201": ok("Registered.", ref("Connection")), **errors("400", "409", "413", "422")}},
      "get": {"operationId": "listConnections", "summary": "List connections",
        "responses": {"200": ok("All connections, by id.", {"type": "object", "required": ["connections"],
            "properties": {"connections": {"type": "array", "items": ref("Connection")}}}), **E401}},
    },
    "/v1/connections/{id}": {
      "parameters": [path_param("id", "Connection id.")],
      "get": {"operationId": "getConnection", "summary": "Show a connection",
        "responses": {"200": ok("The connection.", ref("Connection")), **errors("404")}},
      "delete": {"operationId": "deleteConnection", "summary": "Remove a connection (its jobs stay as history)",
        "responses": {"204": {"description": "Removed."}, **errors("404")}},
    },
    "/v1/archives": {
      "post": {"operationId": "uploadArchive",
        "summary": "Upload a tar or tar.gz of generated files (detected by magic bytes; streamed to disk)",
        "requestBody": {"required": True, "content": {
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
            "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"201": ok("Unpacked (or identical to an earlier upload).", ref("Archive")), **errors("413", "422")}},
    },
    "/v1/jobs": {
      "post": {"operationId": "enqueueJob", "summary": "Enqueue a push job",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255},
            "description": "Same key and body returns the same job; same key with another body is 409."}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("JobSpec")}}},
        "responses": {"202": ok("Queued (or the job an earlier identical request queued; then `Idempotent-Replayed: true`).",
            ref("Enqueued"), headers={"Location": {"schema": string, "description": "/v1/jobs/{id}"},
                                      "Idempotent-Replayed": {"schema": string, "description": "`true` on a replay."}}),
            **errors("400", "404", "409", "413", "422")}},
      "get": {"operationId": "listJobs", "summary": "List jobs, newest first, keyset-paginated",
        "parameters": [query("state", "Filter by state.", ref("JobState")), query("connection", "Filter by connection id."),
                       query("cursor", "`nextCursor` of the previous page."),
                       query("limit", "Page size (default 50).", {"type": "integer", "minimum": 1, "maximum": 500})],
        "responses": {"200": ok("One page.", {"type": "object", "required": ["jobs"], "properties": {
            "jobs": {"type": "array", "items": ref("Job")}, "nextCursor": {"type": "string", "nullable": True}}}), **errors("422")}},
    },
    "/v1/jobs/{id}": {"parameters": [path_param("id", "Job id.")],
      "get": {"operationId": "getJob", "summary": "Job status and result",
        "responses": {"200": ok("The job.", ref("Job")), **errors("404")}}},
    "/v1/jobs/{id}/cancel": {"parameters": [path_param("id", "Job id.")],
      "post": {"operationId": "cancelJob", "summary": "Cancel a queued job, or ask a running one to stop",
        "responses": {"200": ok("The job after the request.", ref("Job")), **errors("404", "409")}}},
    "/v1/jobs/{id}/retry": {"parameters": [path_param("id", "Job id.")],
      "post": {"operationId": "retryJob", "summary": "Queue a failed or cancelled job again (resumes idempotently)",
        "responses": {"200": ok("The job, queued.", ref("Job")), **errors("404", "409")}}},
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "responses": {"Unauthorized": err("Missing or invalid bearer token (`unauthorized`).")},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
          "properties": {"code": {"type": "string", "description": "Stable machine-readable code."}, "message": string}}}},
      "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
          "checks": {"type": "object", "additionalProperties": {"type": "string"}}}},
      "Provider": {"type": "string", "enum": ["bitbucket-cloud", "bitbucket-datacenter", "bitbucket-server"]},
      "Credentials": {"oneOf": [ref("OAuth2Credentials"), ref("OAuth1Credentials"), ref("AccessTokenCredentials")],
          "discriminator": {"propertyName": "type", "mapping": {"oauth2": "#/components/schemas/OAuth2Credentials",
              "oauth1": "#/components/schemas/OAuth1Credentials", "access-token": "#/components/schemas/AccessTokenCredentials"}}},
      "OAuth2Credentials": {"type": "object", "required": ["type", "accessToken"], "properties": {
          "type": {"type": "string", "enum": ["oauth2"]}, "accessToken": string, "refreshToken": string, "expiresAt": datetime,
          "clientId": {"type": "string", "description": "Per-connection OAuth client (Data Center)."}, "clientSecret": string,
          "scopes": {"type": "array", "items": string}}},
      "OAuth1Credentials": {"type": "object", "required": ["type", "consumerKey", "accessToken"], "properties": {
          "type": {"type": "string", "enum": ["oauth1"]}, "consumerKey": string, "accessToken": string, "tokenSecret": string}},
      "AccessTokenCredentials": {"type": "object", "required": ["type", "token"], "properties": {
          "type": {"type": "string", "enum": ["access-token"]}, "token": string}},
      "ConnectionCreate": {"type": "object", "required": ["id", "provider", "workspace", "credentials"], "properties": {
          "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}, "provider": ref("Provider"),
          "workspace": {"type": "string", "description": "Cloud workspace slug, or Data Center / Server project key."},
          "baseUrl": {"type": "string", "format": "uri", "description": "Data Center / Server base URL; required for them unless PUSHBRIDGE_DC_API_URL is set."},
          "apiUrl": {"type": "string", "format": "uri"}, "siteUrl": {"type": "string", "format": "uri"}, "gitUrl": {"type": "string", "format": "uri"},
          "credentials": ref("Credentials")}},
      "Connection": {"type": "object", "required": ["id", "provider", "workspace", "state", "credentials", "createdAt", "updatedAt"], "properties": {
          "id": string, "provider": ref("Provider"), "workspace": string,
          "apiUrl": {"type": "string", "nullable": True}, "siteUrl": {"type": "string", "nullable": True}, "gitUrl": {"type": "string", "nullable": True},
          "state": {"type": "string", "enum": ["active", "reauthorization-required"]},
          "credentials": {"type": "object", "required": ["type"], "description": "Type and expiry only; never a secret.", "properties": {
              "type": {"type": "string", "enum": ["oauth2", "oauth1", "access-token"]}, "expiresAt": datetime,
              "refreshable": {"type": "boolean"}, "consumerKey": string}},
          "createdAt": datetime, "updatedAt": datetime}},
      "Archive": {"type": "object", "required": ["id", "sha256", "files", "bytes"], "properties": {
          "id": {"type": "string", "description": "Use as `source.archive`."},
          "sha256": {"type": "string", "description": "SHA-256 of the uploaded bytes."},
          "files": {"type": "integer", "description": "Regular files and symlinks unpacked."},
          "bytes": {"type": "integer", "description": "Size of the upload."}}},
      "JobState": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
      "JobSpec": {"type": "object", "required": ["connection", "repository", "source", "branch", "commit"], "properties": {
          "connection": string,
          "repository": {"type": "object", "required": ["slug"], "properties": {"slug": string, "create": {"type": "boolean", "default": False},
              "private": {"type": "boolean", "default": True}, "project": string}},
          "source": {"type": "object", "description": "Exactly one of `directory` (under a configured source root) or `archive`.",
              "properties": {"directory": string, "archive": string}},
          "root": {"type": "string", "default": "", "description": "Repository subdirectory the files land under."},
          "mode": {"type": "string", "enum": ["overlay", "sync"], "default": "overlay"},
          "preserve": {"type": "array", "items": string, "description": "Globs `sync` keeps."},
          "branch": {"type": "string", "description": "Git branch name (check-ref-format rules)."},
          "baseBranch": string,
          "commit": {"type": "object", "required": ["message"], "properties": {"message": string, "author": {"type": "object",
              "required": ["name", "email"], "properties": {"name": string, "email": string}}}},
          "pullRequest": {"type": "object", "required": ["title"], "properties": {"title": string, "description": string,
              "draft": {"type": "boolean", "default": False}, "reviewers": {"type": "array", "items": string},
              "closeSourceBranch": {"type": "boolean"}}}}},
      "Enqueued": {"type": "object", "required": ["id", "state"], "properties": {"id": string, "state": ref("JobState")}},
      "JobResult": {"type": "object", "required": ["repositoryUrl", "branch", "commit", "changed", "stats"], "properties": {
          "repositoryUrl": string, "branch": string, "commit": string, "changed": {"type": "boolean"},
          "pullRequest": {"type": "object", "required": ["id", "url", "created"], "properties": {"id": {"type": "integer"}, "url": string,
              "created": {"type": "boolean"}}},
          "stats": {"type": "object", "additionalProperties": {"type": "integer"}}}},
      "JobError": {"type": "object", "required": ["code", "message", "retryable"], "properties": {"code": string, "message": string,
          "retryable": {"type": "boolean"}}},
      "Job": {"type": "object", "required": ["id", "state", "connection", "spec", "attempts", "maxAttempts", "cancelRequested", "createdAt", "updatedAt"],
        "properties": {"id": string, "state": ref("JobState"), "connection": string, "spec": ref("JobSpec"),
          "attempts": {"type": "integer"}, "maxAttempts": {"type": "integer"}, "cancelRequested": {"type": "boolean"},
          "idempotencyKey": {"type": "string", "nullable": True}, "result": ref("JobResult"), "error": ref("JobError"),
          "createdAt": datetime, "updatedAt": datetime, "finishedAt": datetime}},
    },
  },
}

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(root, "openapi", "pushbridge.json"), "w") as f:
    json.dump(spec, f, indent=2, sort_keys=False)
    f.write("\n")
