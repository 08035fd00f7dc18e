#!/usr/bin/env bash
# Installs the Debian packages lstm-media uses (TTS engines, codecs, ABC converter) when they are missing.
# Each entry is "command:package".
set -u
need=()
for pair in espeak-ng:espeak-ng flite:flite ffmpeg:ffmpeg sox:sox abc2midi:abcmidi fluidsynth:fluidsynth; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# a General MIDI SoundFont has no command: "file:package" (music render; any one of them will do)
for pair in /usr/share/sounds/sf2/TimGM6mb.sf2:timgm6mb-soundfont; do
  file=${pair%%:*}; pkg=${pair##*:}
  [ -f "$file" ] || [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=("$pkg")
done
# Festival's voices have no command either: their folders (kws synth's third engine)
for pair in /usr/share/festival/voices/english/kal_diphone:festvox-kallpc16k /usr/share/festival/voices/english/ked_diphone:festvox-kdlpc16k /usr/share/festival/voices/us/cmu_us_slt_arctic_hts:festvox-us-slt-hts; do
  dir=${pair%%:*}; pkg=${pair##*:}
  [ -d "$dir" ] || need+=("$pkg")
done
command -v festival >/dev/null 2>&1 || need+=(festival)
# a shared library has no command either: a dpkg check (kws detect --mic: sounddevice needs PortAudio)
for pkg in libportaudio2; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install these packages by hand: ${need[*]}" >&2; exit 1
fi
$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || { echo "error: could not install ${need[*]} with apt-get (run as root or install them by hand)" >&2; exit 1; }
