"""Usage telemetry of the frameworks, kept off in the package's processes and out of the user's home.

- OpenVINO and NNCF: ``import openvino`` (its ovc tools), ``convert_model`` and ``import nncf`` all
  go through ``openvino_telemetry``, which, unless ``~/intel/openvino_telemetry`` says 0, counts
  every run in ``~/intel/stats``, writes a client id beside it and sends events. It reads no
  setting from the environment but CI=true (which other tools read too); NNCF_CI only swaps NNCF's
  object after it has been made, and NNCF has no switch of its own. Its consent check declines
  when it finds no folder for the consent file: :func:`openvino_telemetry_off` makes it find none.
  ``backends.openvino_backend`` calls it when imported, before the package imports openvino or
  nncf (``quantize.openvino`` imports that module first).
- onnxruntime: ORT_DISABLE_TELEMETRY, set in the package's ``__init__`` (it must be there before
  onnxruntime is imported).
"""


def openvino_telemetry_off():
    """Make openvino_telemetry decline in this process (see the module notes); without the package,
    OpenVINO uses a stub that records nothing."""
    try:
        from openvino_telemetry.utils.opt_in_checker import OptInChecker
    except ImportError:
        return
    OptInChecker.consent_file_base_dir = staticmethod(lambda: None)
