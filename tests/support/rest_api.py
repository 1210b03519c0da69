"""A real REST API for the OpenAPI tests: a pet store (FastAPI) serving its own OpenAPI 3.1 document at
`/openapi.json`; `tests/data/openapi/petstore-3.0.yaml` and `petstore-2.0.yaml` describe the same API
by hand, with the same operationIds, so one set of behavioural tests runs over all three versions.

    python -m tests.support.rest_api [--host 127.0.0.1] [--port 0]     (from the repository root)

prints `READY <base url>` once it accepts connections. What it exercises: path, query (form, pipe and
space delimited, deepObject), header and cookie parameters; JSON, form and multipart bodies; a `oneOf`
with a discriminator, a recursive schema, nullable and read-only fields; 2xx without content, error
statuses, a text answer, a large answer; and every auth kind on `/secure/whoami` (bearer, API key in
header / query / cookie, HTTP basic, OAuth 2 client credentials from its own `/oauth/token`).
`/echo/{value}` answers with the request exactly as it arrived (raw path, raw query, headers, cookies).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Header, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from tests.support.asgi_serve import bind, serve_ready

__all__ = [
    "API_KEY",
    "BASIC",
    "BEARER",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "build_app",
    "main",
]

BEARER = "bearer-token-0123456789"
API_KEY = "api-key-0123456789"
BASIC = ("scott", "tiger-0123456789")
CLIENT_ID = "bastion-client"
CLIENT_SECRET = "client-secret-0123456789"


class NewPet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="The pet's name.")
    tag: str | None = Field(default=None, description="A free-form tag, or null.")
    status: Literal["available", "pending", "sold"] = "available"


class Pet(NewPet):
    id: int = Field(json_schema_extra={"readOnly": True})


class Cat(BaseModel):
    petType: Literal["cat"]
    name: str
    indoor: bool = True


class Dog(BaseModel):
    petType: Literal["dog"]
    name: str
    barks: bool = True


class Category(BaseModel):
    name: str
    children: list[Category] = []


class Classified(BaseModel):
    petType: str
    summary: str


class Count(BaseModel):
    count: int


class Photo(BaseModel):
    filename: str
    size: int
    sha256: str
    caption: str | None


class Greeting(BaseModel):
    greeting: str


class WhoAmI(BaseModel):
    via: str


class Error(BaseModel):
    detail: str


def _count(category: Category) -> int:
    return 1 + sum(_count(c) for c in category.children)


def build_app() -> FastAPI:
    app = FastAPI(title="Bastion test pet store", version="1.0.0")
    pets: dict[int, Pet] = {1: Pet(id=1, name="Rex", tag="dog", status="available")}
    tokens: dict[str, float] = {}
    issued = {"count": 0}

    @app.get("/pets", operation_id="listPets", response_model=list[Pet], tags=["pets"], summary="List pets")
    def list_pets(
        limit: Annotated[int, Query(ge=1, le=100, description="How many pets at most.")] = 20,
        status: Literal["available", "pending", "sold"] | None = None,
        tags: Annotated[list[str] | None, Query(description="Only pets with one of these tags.")] = None,
    ) -> list[Pet]:
        found = [p for p in pets.values() if (status is None or p.status == status) and (not tags or p.tag in tags)]
        return found[:limit]

    @app.post("/pets", operation_id="createPet", status_code=201, response_model=Pet, tags=["pets"])
    def create_pet(pet: NewPet) -> Pet:
        created = Pet(id=max(pets, default=0) + 1, **pet.model_dump())
        pets[created.id] = created
        return created

    @app.get(
        "/pets/{petId}",
        operation_id="getPet",
        response_model=Pet,
        tags=["pets"],
        summary="One pet",
        responses={404: {"model": Error}},
    )
    def get_pet(petId: int) -> Pet:
        if petId not in pets:
            raise HTTPException(404, f"no pet {petId}")
        return pets[petId]

    @app.put(
        "/pets/{petId}", operation_id="updatePet", response_model=Pet, tags=["pets"], responses={404: {"model": Error}}
    )
    def update_pet(petId: int, pet: NewPet) -> Pet:
        if petId not in pets:
            raise HTTPException(404, f"no pet {petId}")
        pets[petId] = Pet(id=petId, **pet.model_dump())
        return pets[petId]

    @app.delete(
        "/pets/{petId}", operation_id="deletePet", status_code=204, tags=["pets"], responses={404: {"model": Error}}
    )
    def delete_pet(petId: int) -> Response:
        if pets.pop(petId, None) is None:
            raise HTTPException(404, f"no pet {petId}")
        return Response(status_code=204)

    @app.post("/pets/{petId}/photo", operation_id="uploadPhoto", response_model=Photo, tags=["pets"])
    async def upload_photo(
        petId: int, file: Annotated[UploadFile, File()], caption: Annotated[str | None, Form()] = None
    ) -> Photo:
        data = await file.read()
        return Photo(
            filename=file.filename or "", size=len(data), sha256=hashlib.sha256(data).hexdigest(), caption=caption
        )

    @app.post("/login", operation_id="login", response_model=Greeting, tags=["account"])
    def login(username: Annotated[str, Form()], password: Annotated[str, Form()]) -> Greeting:
        return Greeting(greeting=f"hello {username} ({len(password)} characters)")

    @app.get("/echo/{value:path}", operation_id="echo", tags=["debug"])
    def echo(
        request: Request,
        value: str,
        ids: str | None = None,
        words: str | None = None,
        flags: str | None = None,
        note: Annotated[str | None, Header(alias="X-Note")] = None,
    ) -> dict[str, Any]:
        return {
            "value": value,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "note": note,
            "cookies": dict(request.cookies),
            "headers": {k: v for k, v in request.headers.items() if k.startswith("x-")},
        }

    @app.get("/search", operation_id="searchPets", tags=["debug"])
    def search(request: Request) -> dict[str, Any]:
        return {"query": request.url.query, "cookies": dict(request.cookies)}

    @app.post("/animals/classify", operation_id="classifyAnimal", response_model=Classified, tags=["animals"])
    def classify(animal: Annotated[Cat | Dog, Field(discriminator="petType")]) -> Classified:
        detail = f"indoor={animal.indoor}" if isinstance(animal, Cat) else f"barks={animal.barks}"
        return Classified(petType=animal.petType, summary=f"{animal.name}: {detail}")

    @app.post("/categories/count", operation_id="countCategories", response_model=Count, tags=["animals"])
    def count(category: Category) -> Count:
        return Count(count=_count(category))

    hits: dict[str, int] = {}

    @app.post("/status/{code}", operation_id="postStatus", tags=["debug"])
    def post_status(code: int) -> Response:
        return status(code, "POST")

    @app.get("/hits", include_in_schema=False)
    def hit_counts() -> dict[str, int]:
        return hits

    @app.get("/status/{code}", operation_id="getStatus", tags=["debug"])
    def status(code: int, method: str = "GET") -> Response:
        hits[f"{method} {code}"] = hits.get(f"{method} {code}", 0) + 1
        if code == 204:
            return Response(status_code=204)
        return JSONResponse({"detail": f"status {code} as asked", "padding": "x" * 10_000}, status_code=code)

    @app.get("/text", operation_id="getText", response_class=PlainTextResponse, tags=["debug"])
    def text() -> str:
        return "plain text, not JSON"

    @app.get("/big", operation_id="getBig", tags=["debug"])
    def big(size: int) -> dict[str, Any]:
        return {"data": "y" * size}

    @app.get("/health", tags=["debug"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    def who(request: Request) -> str | None:
        authorization = request.headers.get("authorization", "")
        if authorization == f"Bearer {BEARER}":
            return "bearer"
        if authorization.startswith("Bearer ") and tokens.get(authorization[7:], 0) > time.time():
            return "client_credentials"
        if authorization == "Basic " + base64.b64encode(f"{BASIC[0]}:{BASIC[1]}".encode()).decode():
            return "basic"
        if request.headers.get("x-api-key") == API_KEY:
            return "api_key_header"
        if request.query_params.get("api_key") == API_KEY:
            return "api_key_query"
        if request.cookies.get("api_key") == API_KEY:
            return "api_key_cookie"
        return None

    @app.get("/secure/whoami", operation_id="whoami", response_model=WhoAmI, tags=["account"])
    def whoami(request: Request) -> Any:
        via = who(request)
        if via is None:
            return JSONResponse({"detail": "missing or wrong credentials"}, status_code=401)
        return WhoAmI(via=via)

    @app.post("/oauth/token", include_in_schema=False)
    async def token(request: Request) -> Any:
        form = await request.form()
        basic = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        posted = form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if basic != expected and not posted:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        issued["count"] += 1
        value = secrets.token_urlsafe(16)
        lifetime = int(request.query_params.get("lifetime", "3600"))
        tokens[value] = time.time() + lifetime
        return {"access_token": value, "token_type": "Bearer", "expires_in": lifetime, "scope": form.get("scope")}

    @app.get("/oauth/issued", include_in_schema=False)
    def issued_count() -> dict[str, int]:
        return issued

    @app.post("/oauth/revoke-all", include_in_schema=False)
    def revoke_all() -> dict[str, int]:
        tokens.clear()
        return issued

    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
    return app


def _document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's own 3.1 document, with what its parameter declarations cannot say: the styles of the
    array and object query parameters, the cookie and header parameters read off the request, the
    security schemes, and no operationId for `/health` (tools then fall back to method and path)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    paths = doc["paths"]
    echo = paths["/echo/{value}"]["get"]
    styles = {"ids": "pipeDelimited", "words": "spaceDelimited", "flags": "form"}
    for param in echo["parameters"]:
        if param["name"] in styles:
            param["schema"] = {"type": "array", "items": {"type": "string"}}
            param["style"], param["explode"] = styles[param["name"]], False
    search = paths["/search"]["get"]
    search["parameters"] = [
        {
            "name": "filter",
            "in": "query",
            "style": "deepObject",
            "explode": True,
            "schema": {"type": "object", "properties": {"kind": {"type": "string"}, "age": {"type": "integer"}}},
        },
        {"name": "session", "in": "cookie", "schema": {"type": "string"}},
    ]
    del paths["/health"]["get"]["operationId"]
    paths["/status/{code}"]["get"]["parameters"] = paths["/status/{code}"]["post"]["parameters"]
    paths["/status/{code}"]["get"]["responses"]["204"] = {"description": "No content"}
    doc["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "basic": {"type": "http", "scheme": "basic"},
        "key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
        "client": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}}},
    }
    paths["/secure/whoami"]["get"]["security"] = [{"bearer": []}, {"basic": []}, {"key": []}, {"client": []}]
    paths["/secure/whoami"]["get"]["responses"]["401"] = {"description": "No or wrong credentials"}
    app.openapi_schema = doc
    return doc


async def main(host: str, port: int) -> None:
    sock, base = bind(host, port)
    await serve_ready(build_app(), sock, base, lifespan="off")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
