"""The pre-flight check of a split (everything that would make its numbers meaningless, listed at once)
and the message a user gets for bad input found inside a DataLoader worker."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from torch.utils.data import DataLoader, Dataset

from data_utils import load_split, split_paths
from data_utils.dataset import header_sample_rate
from utils.errors import InputError, user_message

NB_SAMP = 1000


def make_split(root: Path, split: str, keys: list[str]) -> tuple[Path, list[str]]:
    """A protocol of ``keys`` and a 16 kHz flac file for each trial; returns the audio folder and the ids."""
    paths = split_paths(root, split)
    paths.audio_dir.mkdir(parents=True, exist_ok=True)
    paths.protocol.parent.mkdir(parents=True, exist_ok=True)
    utt_ids = [f"LA_{split[0].upper()}_{1000000 + i}" for i in range(len(keys))]
    paths.protocol.write_text("".join(f"LA_0001 {u} - {'-' if k == 'bonafide' else 'A01'} {k}\n"
                                      for u, k in zip(utt_ids, keys)))
    for utt_id in utt_ids:
        sf.write(paths.audio_dir / f"{utt_id}.flac", np.zeros(2000), 16000, subtype="PCM_16")
    return paths.audio_dir, utt_ids


def test_a_sound_split_loads(tmp_path: Path) -> None:
    make_split(tmp_path, "dev", ["bonafide", "spoof", "spoof"])
    assert len(load_split(tmp_path, "dev", NB_SAMP).dataset) == 3


def test_every_problem_of_a_split_is_listed_at_once(tmp_path: Path) -> None:
    audio_dir, ids = make_split(tmp_path, "eval", ["bonafide"] * 4 + ["spoof"] * 9)
    for utt_id in ids[:7]:  # 7 missing: the first 5 are shown
        (audio_dir / f"{utt_id}.flac").unlink()
    (audio_dir / f"{ids[7]}.flac").write_bytes(b"not audio" * 10)
    (audio_dir / f"{ids[8]}.flac").write_bytes(b"")
    sf.write(audio_dir / f"{ids[9]}.flac", np.zeros(800), 8000, subtype="PCM_16")
    sf.write(audio_dir / f"{ids[10]}.flac", np.zeros(800), 44100, format="WAV")  # not FLAC inside: soundfile reads it
    sf.write(audio_dir / f"{ids[11]}.flac", np.zeros(800), 16000, format="WAV")  # likewise, and fine
    with pytest.raises(InputError) as info:
        load_split(tmp_path, "eval", NB_SAMP)
    message = str(info.value)
    assert message.startswith("the eval split cannot be used:\n")
    assert f"7 of 13 audio files in the protocol are missing from {audio_dir}; the first 5:" in message
    assert all(f"{utt_id}.flac" in message for utt_id in ids[:5]) and ids[5] not in message
    assert "2 of 13 audio files cannot be read:" in message
    assert f"cannot read audio file {audio_dir / ids[7]}.flac" in message
    assert f"cannot read audio file {audio_dir / ids[8]}.flac" in message
    assert (f"2 of 13 audio files are not 16000 Hz:\n  {audio_dir / ids[9]}.flac (8000 Hz)\n"
            f"  {audio_dir / ids[10]}.flac (44100 Hz)") in message
    assert ids[11] not in message and ids[12] not in message


@pytest.mark.parametrize("split, why", [("train", "training on one class learns nothing"),
                                        ("dev", "the EER needs both classes")])
def test_a_split_of_one_class_is_refused(tmp_path: Path, split: str, why: str) -> None:
    make_split(tmp_path, split, ["spoof"] * 3)
    protocol = split_paths(tmp_path, split).protocol
    with pytest.raises(InputError, match=f"all 3 trials in {protocol} are spoof: {why}$"):
        load_split(tmp_path, split, NB_SAMP)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 96000, 192000])
def test_header_sample_rate_equals_soundfile_info(tmp_path: Path, sample_rate: int) -> None:
    for subtype in ("PCM_16", "PCM_24"):
        path = tmp_path / f"{sample_rate}_{subtype}.flac"
        sf.write(path, np.zeros(100), sample_rate, subtype=subtype)
        assert header_sample_rate(path) == sf.info(path).samplerate == sample_rate


class _BadItem(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise InputError(f"audio file /data/LA_T_{index}.flac holds 1 NaN or infinite sample(s)")


def test_user_message_unwraps_an_error_from_a_dataloader_worker() -> None:
    with pytest.raises(InputError) as info:  # torch re-raises it with its type, in a new message
        next(iter(DataLoader(_BadItem(), num_workers=1)))
    assert str(info.value).startswith("Caught InputError in DataLoader worker process 0.\nOriginal Traceback")
    assert user_message(info.value) == "audio file /data/LA_T_0.flac holds 1 NaN or infinite sample(s)"


def test_user_message_of_a_plain_error_is_its_text() -> None:
    assert user_message(InputError("p.txt, line 3: bad")) == "p.txt, line 3: bad"
    assert user_message(ValueError("Caught nothing")) == "Caught nothing"
