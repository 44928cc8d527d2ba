"""The notice for a precision this CPU emulates (``lightning_gen.runs.precision``)."""

from lightning_gen.runs.precision import emulated_precision_notice


def test_emulated_precision_notice_names_the_fix() -> None:
    notice = emulated_precision_notice("bf16-mixed", on_cpu=True, native_bf16=False)
    assert notice is not None and "`trainer.precision=bf16-mixed`" in notice and "--trainer.precision=32-true" in notice
    assert emulated_precision_notice("bf16-mixed", on_cpu=True, native_bf16=True) is None
    assert emulated_precision_notice("bf16-mixed", on_cpu=False, native_bf16=False) is None
    assert emulated_precision_notice("32-true", on_cpu=True, native_bf16=False) is None
