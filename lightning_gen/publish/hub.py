"""``--push_to_hub``: the written folder goes to the Hub in one commit, or the command stops in one sentence.

``create_repo`` (kept if it exists) then ``upload_folder``, which is a single commit: a failure part-way leaves
the repository as it was. Without a token, offline, or unreachable, nothing is sent and the folder stays on disk.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from lightning_gen.errors import UserError

try:  # huggingface_hub 2 talks HTTP through httpx2, earlier versions through httpx
    import httpx2 as http_client
except ImportError:
    import httpx as http_client

NETWORK_ERRORS = (http_client.HTTPError, HfHubHTTPError, OfflineModeIsEnabled, OSError)


def push_folder(folder: str | Path, repo_id: str, private: bool = False, commit_message: str = "Publish from lightning_gen") -> str:
    """Uploads ``folder`` to the model repository ``repo_id`` (USER/NAME); returns the commit's URL."""
    stop = f"wrote {folder} but did not upload it to {repo_id}"
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"{stop}: HF_HUB_OFFLINE is set; unset it on a machine with network and run `hf upload {repo_id} {folder}`.")
    if get_token() is None:
        raise UserError(
            f"{stop}: no Hugging Face token; run `hf auth login` (or set HF_TOKEN) and publish again, or `hf upload {repo_id} {folder}`."
        )
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message=commit_message)
    except NETWORK_ERRORS as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"{stop} ({reason}); check the network and the token's write access, then run `hf upload {repo_id} {folder}`."
        ) from error
    return str(commit.commit_url)
