"""Seeds a crowd into a server's database: `seed_crowd(env, customers, others)` runs
`python -m tests.support.crowd <customers> <accounts without orders>` with the server's
environment (same DATABASE_URL and JWT_SECRET). Each customer gets one order of her own;
everyone gets a live session. Prints (and `seed_crowd` returns) JSON: {"customers":
[{"email", "token", "code"}], "others": [{"email", "token"}]}.

Through the application's own services, but without the API: 250 argon2 hashes and logins
would be minutes of a shared core, and they are not what the budget tests measure (the
login tests count every hash). One hash is computed and stored for every account.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from pathlib import Path

from app.accounts.models import User
from app.container import build_services
from app.orders.inputs import AddressInput, LineInput
from app.security.policy import Viewer
from app.security.roles import Role
from app.security.tokens import new_public_id
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Crowd-password-2026"
ADDRESS = AddressInput(
    name="Crowd Customer",
    line1="1 Test Street",
    city="Berlin",
    postal_code="10115",
    country="DE",
)


async def seed(customers: int, others: int) -> dict[str, list[dict[str, str]]]:
    services = build_services(Settings.from_env())
    try:
        digest = await services.passwords.hash(PASSWORD)
        tag = secrets.token_hex(4)
        users: list[User] = []
        async with services.db.write() as session:
            for i in range(customers + others):
                kind = "customer" if i < customers else "other"
                user = User(
                    public_id=new_public_id(),
                    email=f"{kind}-{tag}-{i}@crowd.example",
                    password_hash=digest,
                    name="Crowd",
                    role=Role.CUSTOMER.value,
                )
                session.add(user)
                users.append(user)
            await session.commit()
            for user in users:
                await session.refresh(user)
        out: dict[str, list[dict[str, str]]] = {"customers": [], "others": []}
        for i, user in enumerate(users):
            assert user.id is not None
            session_result = await services.accounts._start_session(user)
            entry = {"email": user.email, "token": session_result.access_token}
            if i < customers:
                viewer = Viewer(user.id, user.public_id, Role.CUSTOMER, 0, user.email)
                view = await services.orders.place_order(
                    viewer, [LineInput("PEN-GEL-3", 1)], ADDRESS, "tok_visa", f"crowd-{tag}-{i}"
                )
                entry["code"] = view.order.code
                out["customers"].append(entry)
            else:
                out["others"].append(entry)
        return out
    finally:
        await services.aclose()


def seed_crowd(env: dict[str, str], customers: int, others: int) -> dict[str, list[dict[str, str]]]:
    """Seed the crowd into the database of the server whose environment is `env`, in a
    process of its own (the test's own event loop stays out of it)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.crowd", str(customers), str(others)],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seeded: dict[str, list[dict[str, str]]] = json.loads(result.stdout)
    return seeded


if __name__ == "__main__":
    print(json.dumps(asyncio.run(seed(int(sys.argv[1]), int(sys.argv[2])))))
