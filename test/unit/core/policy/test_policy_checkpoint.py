"""π0 checkpoints in LeRobot's layout: tokenizer, normalisation, cameras, joints, inspect, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_fixtures import (
    ACTION_DIM,
    CHUNK,
    IMAGE_KEYS,
    SIDE,
    STATE_DIM,
    write_lerobot_checkpoint,
    write_tokenizer,
)
from safetensors.torch import load_file
from transformers import PI0ForConditionalGeneration

from sop_ros.cli import main
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import Pi0Policy, PolicyConfig
from sop_ros.core.policy.checkpoint import read_checkpoint
from sop_ros.core.policy.export import export_checkpoint, inspect_checkpoint
from sop_ros.core.types import Observation

STATES = ("s0", "s1", "s2", "s3")
LEROBOT_VISION = "model.paligemma_with_expert.paligemma.model.vision_tower.vision_model."
ACTIONS = ("a0", "a1", "a2")


def checkpoint_config(ckpt: Path, tokenizer: Path | None, **overrides) -> PolicyConfig:
    values = dict(
        model=str(ckpt),
        tokenizer=str(tokenizer) if tokenizer else "",
        camera_names=("front", "wrist"),
        camera_keys="observation.images.base_0_rgb,observation.images.left_wrist_0_rgb",
        horizon=CHUNK,
        denoising_steps=3,
        state_names=STATES,
        action_names=ACTIONS,
        device="cpu",
    )
    values.update(overrides)
    return PolicyConfig(**values)


def obs(seed: int = 0, cameras: tuple[str, ...] = ("front", "wrist")) -> Observation:
    rng = np.random.default_rng(seed)
    shapes = {"front": (21, 28, 3), "wrist": (SIDE, SIDE, 3)}
    return Observation(
        images={name: rng.integers(0, 256, shapes[name], dtype=np.uint8) for name in cameras},
        state=rng.normal(size=STATE_DIM).astype(np.float32),
        instruction="Pick up the Red cube",
        stamp_ns=1,
    )


def encoded(policy: Pi0Policy, observation: Observation) -> dict[str, torch.Tensor]:
    prompt = policy._prompt(observation.instruction, None)
    return policy._encoder.observations(
        [observation.images], [observation.state], [prompt], policy.norm_stats
    )


NOISE = torch.randn(1, CHUNK, 32, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return write_lerobot_checkpoint(tmp_path / "pi0")


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    return write_tokenizer(tmp_path / "paligemma")


def test_a_checkpoint_without_a_tokenizer_is_refused_with_what_to_download(ckpt: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        Pi0Policy(checkpoint_config(ckpt, None))
    message = str(refused.value)
    assert "has no tokenizer" in message
    assert "google/paligemma-3b-pt-224" in message
    assert "tokenizer: ~/models/paligemma-tokenizer" in message
    assert "tokenizer.json" in message
    with pytest.raises(ConfigError, match=r"has no tokenizer\.json"):
        Pi0Policy(checkpoint_config(ckpt, ckpt.parent / "nowhere"))


def test_tokenizer_json_alone_loads_and_a_foreign_one_is_refused(ckpt: Path, tmp_path: Path) -> None:
    alone = write_tokenizer(tmp_path / "alone", config=False)
    assert not (alone / "tokenizer_config.json").exists()
    policy = Pi0Policy(checkpoint_config(ckpt, alone))
    assert policy.tokenizer.bos_token_id == 2 and policy.tokenizer.pad_token_id == 0
    assert policy.infer(obs()).actions.shape == (CHUNK, ACTION_DIM)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    document = json.loads((alone / "tokenizer.json").read_text())
    document["added_tokens"] = [t for t in document["added_tokens"] if t["content"] != "<bos>"]
    document["model"]["vocab"].pop("<bos>")
    (foreign / "tokenizer.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="no <bos> token"):
        Pi0Policy(checkpoint_config(ckpt, foreign))


def test_every_tensor_loads_and_inputs_follow_the_checkpoint(ckpt: Path, tokenizer: Path) -> None:
    policy = Pi0Policy(checkpoint_config(ckpt, tokenizer))
    stored = load_file(ckpt / "model.safetensors")
    vision = stored[
        "model.paligemma_with_expert.paligemma.model.vision_tower.vision_model.post_layernorm.weight"
    ]
    assert torch.equal(policy.model.model.vlm.vision_tower.post_layernorm.weight, vision)
    assert torch.equal(policy.model.embed_action_time.state_proj.weight, stored["model.state_proj.weight"])
    observation = obs()
    inputs = encoded(policy, observation)
    per_image = (SIDE // 14) ** 2
    assert inputs["input_ids"].shape[1] == len(IMAGE_KEYS) * per_image + 48  # LeRobot's 48 with <bos>
    assert policy._prompt("Pick up the Red cube", None) == "Pick up the Red cube"  # case kept
    # The third key has no camera: its slot and its image tokens are masked.
    assert inputs["pixel_attention_mask"].tolist() == [[True, True, False]]
    assert inputs["attention_mask"][0, : 2 * per_image].all()
    assert not inputs["attention_mask"][0, 2 * per_image : 3 * per_image].any()
    # MEAN_STD as LeRobot applies it: (x - mean) / (std + eps).
    spec = read_checkpoint(ckpt)
    stats = load_file(ckpt / "policy_preprocessor_step_5_normalizer_processor.safetensors")
    want = (observation.state - stats["observation.state.mean"].numpy()) / (
        stats["observation.state.std"].numpy() + 1e-8
    )
    np.testing.assert_allclose(inputs["state"][0, :STATE_DIM].numpy(), want, rtol=1e-6)
    assert spec.action_norm.mode == "QUANTILES"
    # The 4:3 front camera is resized with padding: black (-1) rows above and below.
    front = inputs["pixel_values"][0, 0]
    assert bool((front[:, 0, :] == -1).all()) and not bool((front[:, SIDE // 2, :] == -1).all())


def test_an_embedding_stored_as_the_tied_lm_head_only_loads(tmp_path: Path, tokenizer: Path) -> None:
    untied = Pi0Policy(checkpoint_config(write_lerobot_checkpoint(tmp_path / "both"), tokenizer))
    tied = Pi0Policy(checkpoint_config(write_lerobot_checkpoint(tmp_path / "tied", tied=True), tokenizer))
    embedding = untied.model.get_input_embeddings().weight
    assert torch.equal(tied.model.get_input_embeddings().weight, embedding)
    np.testing.assert_array_equal(
        tied.infer_batch([obs()], noise=NOISE)[0].actions, untied.infer_batch([obs()], noise=NOISE)[0].actions
    )


def test_actions_are_unnormalised_with_the_checkpoint_statistics(ckpt: Path, tokenizer: Path) -> None:
    policy = Pi0Policy(checkpoint_config(ckpt, tokenizer))
    observation = obs()
    inputs = encoded(policy, observation)
    raw = policy.model.sample_actions(**inputs, noise=NOISE, num_steps=3)[0, :, :ACTION_DIM].numpy()
    stats = load_file(ckpt / "policy_postprocessor_step_0_unnormalizer_processor.safetensors")
    q01, q99 = stats["action.q01"].numpy(), stats["action.q99"].numpy()
    want = (raw + 1.0) * (q99 - q01) / 2.0 + q01  # LeRobot's QUANTILES inverse
    chunk = policy.infer_batch([observation], noise=NOISE)[0]
    np.testing.assert_allclose(chunk.actions, want, rtol=1e-5, atol=1e-5)
    # Post-training keeps the statistics the network was trained with.
    assert policy.set_norm_stats(np.ones((5, STATE_DIM)), np.ones((5, ACTION_DIM))) is policy.norm_stats


def test_joint_layouts_map_the_robot_names_onto_the_checkpoint_vectors(ckpt: Path, tokenizer: Path) -> None:
    plain = Pi0Policy(checkpoint_config(ckpt, tokenizer))
    # The same robot listing its joints in another order, with the checkpoint's order given.
    states, actions = tuple(reversed(STATES)), ("a2", "a0", "a1")
    mapped = Pi0Policy(
        checkpoint_config(
            ckpt,
            tokenizer,
            state_names=states,
            action_names=actions,
            state_layout=",".join(STATES),
            action_layout=",".join(ACTIONS),
        )
    )
    observation = obs()
    permuted = Observation(
        images=observation.images,
        state=observation.state[::-1].copy(),
        instruction=observation.instruction,
        stamp_ns=1,
    )
    expected = plain.infer_batch([observation], noise=NOISE)[0].actions
    got = mapped.infer_batch([permuted], noise=NOISE)[0].actions
    np.testing.assert_allclose(got, expected[:, [2, 0, 1]], atol=1e-6)
    assert mapped.config_hash != plain.config_hash
    with pytest.raises(ConfigError, match="state vector has 4 entries, the robot's state_names 3"):
        Pi0Policy(checkpoint_config(ckpt, tokenizer, state_names=STATES[:3]))
    with pytest.raises(ConfigError, match="must list exactly the names"):
        checkpoint_config(ckpt, tokenizer, state_layout="s0,s1,s2,x")


def test_cameras_must_map_to_the_checkpoint_keys(ckpt: Path, tokenizer: Path) -> None:
    with pytest.raises(ConfigError, match=r"no image input .*observation\.images\.front"):
        Pi0Policy(checkpoint_config(ckpt, tokenizer, camera_keys=""))
    with pytest.raises(ConfigError, match="one distinct checkpoint image key per camera"):
        checkpoint_config(ckpt, tokenizer, camera_keys="observation.images.base_0_rgb")
    policy = Pi0Policy(checkpoint_config(ckpt, tokenizer))
    # A camera missing from one observation is masked as LeRobot masks it, not refused.
    assert policy.infer(obs(cameras=("front",))).actions.shape == (CHUNK, ACTION_DIM)
    with pytest.raises(ConfigError, match="none of the policy's cameras"):
        policy.infer(obs(cameras=()))
    with pytest.raises(ConfigError, match="apply to a checkpoint directory"):
        PolicyConfig(model="tiny", camera_keys="observation.images.x")


def test_modes_lerobot_writes_are_read_and_others_refused(tmp_path: Path, tokenizer: Path) -> None:
    for state_mode, action_mode in (("MIN_MAX", "MEAN_STD"), ("IDENTITY", "QUANTILES")):
        ckpt = write_lerobot_checkpoint(tmp_path / state_mode, state_mode=state_mode, action_mode=action_mode)
        spec = read_checkpoint(ckpt)
        assert (spec.state_norm.mode, spec.action_norm.mode) == (state_mode, action_mode)
        assert Pi0Policy(checkpoint_config(ckpt, tokenizer)).infer(obs()).actions.shape == (CHUNK, ACTION_DIM)
    odd = write_lerobot_checkpoint(tmp_path / "odd", state_mode="LOG_SCALE")
    with pytest.raises(ConfigError, match="'LOG_SCALE' is not supported"):
        read_checkpoint(odd)


def test_config_hash_covers_tokenizer_and_normalisation(tmp_path: Path, tokenizer: Path) -> None:
    ckpt = write_lerobot_checkpoint(tmp_path / "a")
    base = Pi0Policy(checkpoint_config(ckpt, tokenizer)).config_hash
    other = write_lerobot_checkpoint(tmp_path / "b", action_mode="MEAN_STD")
    shutil.copyfile(ckpt / "model.safetensors", other / "model.safetensors")
    (other.parent / "a").rename(other.parent / "a_old")  # same directory name, other statistics
    other.rename(other.parent / "a")
    assert Pi0Policy(checkpoint_config(other.parent / "a", tokenizer)).config_hash != base


def test_inspect_reports_what_the_checkpoint_expects(ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    report = inspect_checkpoint(ckpt)
    assert not report.weight_problems and report.weights_present
    assert main(["checkpoint", "inspect", str(ckpt)]) == 0
    text = capsys.readouterr().out
    for fact in (*IMAGE_KEYS, "MEAN_STD", "QUANTILES", "48 tokens", "MISSING: download google/paligemma"):
        assert fact in text, fact


def test_full_size_pi0_base_structure_inspects_with_real_counts(tmp_path: Path) -> None:
    # config.json and parameter counts as LeRobot 0.6.1 itself writes and builds them for
    # lerobot/pi0_base (test/crosscheck/lerobot_side.py pi0-base, on the meta device).
    data = Path(__file__).parent / "data"
    lerobot = json.loads((data / "pi0_base_lerobot_parameter_counts.json").read_text())
    ckpt = tmp_path / "pi0_base"
    ckpt.mkdir()
    shutil.copyfile(data / "pi0_base_config.json", ckpt / "config.json")
    report = inspect_checkpoint(ckpt)
    counts = report.parameters
    paligemma = sum(
        counts[p] for p in ("vision tower (SigLIP)", "multimodal projector", "language model (Gemma)")
    )
    assert paligemma == lerobot["model.paligemma_with_expert.paligemma.model"] == 2_923_335_408
    assert counts["action expert (Gemma)"] == lerobot["model.paligemma_with_expert.gemma_expert.model"]
    projections = sum(v for k, v in lerobot.items() if k.startswith("model.") and "paligemma" not in k)
    assert counts["state/action/time projections"] == projections == 3_248_160
    # π0's 3.24 B parameters; LeRobot also keeps two unused lm_heads, transformers one embedding.
    assert sum(counts.values()) - counts["action expert's unused embedding"] == 3_238_048_528
    assert report.trainable == 729_516_816 and not report.weights_present


def test_export_loads_back_in_sop_and_transformers(ckpt: Path, tokenizer: Path, tmp_path: Path) -> None:
    policy = Pi0Policy(checkpoint_config(ckpt, tokenizer))
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(0.01)  # stands for post-training
    weights = tmp_path / "v0003.safetensors"
    policy.save_trainable(weights, version="v0003")
    settings = tmp_path / "policy.yaml"
    settings.write_text(
        "camera_names: [front, wrist]\n"
        "camera_keys: observation.images.base_0_rgb,observation.images.left_wrist_0_rgb\n"
        f"horizon: {CHUNK}\nstate_names: {list(STATES)}\naction_names: {list(ACTIONS)}\n"
    )
    out = tmp_path / "exported"
    argv = ["checkpoint", "export", "--base", str(ckpt), "--weights", str(weights), "--out", str(out)]
    assert main([*argv, "--tokenizer", str(tokenizer), "--config", str(settings)]) == 0
    again = Pi0Policy(checkpoint_config(out, None))  # the export carries the tokenizer
    expected = policy.infer_batch([obs()], noise=NOISE)[0].actions
    np.testing.assert_array_equal(again.infer_batch([obs()], noise=NOISE)[0].actions, expected)
    via_transformers = Pi0Policy(checkpoint_config(out / "transformers", None))
    np.testing.assert_array_equal(via_transformers.infer_batch([obs()], noise=NOISE)[0].actions, expected)
    hf = PI0ForConditionalGeneration.from_pretrained(out / "transformers", local_files_only=True)
    for name, tensor in policy.model.state_dict().items():
        assert torch.equal(hf.state_dict()[name], tensor), name
    assert json.loads((out / "sop_export.json").read_text())["version"] == "v0003"
    with pytest.raises(ConfigError, match="not overwriting"):
        export_checkpoint(again, out, version="v0003")
    # Without the robots' settings the export is refused, not guessed.
    assert main([*argv, "--tokenizer", str(tokenizer)]) == 1
