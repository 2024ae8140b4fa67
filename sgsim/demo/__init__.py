"""The web demo of sound-guided editing (`sgsim demo`): a Gradio page (sgsim.demo.page, needs the `demo` extra) over
one DemoEngine, which runs one edit at a time per device; uploads are checked by sgsim.demo.uploads."""

from sgsim.demo.engine import DemoEngine, EditCancelled, EditedRun, EditRequest, VideoRequest, build_editor
from sgsim.demo.uploads import UploadLimits

__all__ = ["DemoEngine", "EditCancelled", "EditRequest", "EditedRun", "UploadLimits", "VideoRequest", "build_editor"]
