-- Rules of a music build, applied by tup to every index folder, once per variant (profile).
-- The index files are written by music-build's scanner; see musicbuild/scan.py.
-- Only the settings read here are part of the commands, so tup re-runs a profile's
-- commands exactly when one of these settings changes. The codec's settings are the ones
-- CONFIG_SETTINGS names (tup_profile renders it from the codec table): each becomes
-- `--<setting> <value>` of music-encode, whatever the codec and the setting.
local profile = tup.getconfig('PROFILE')
if profile == '' then
  return
end

-- music-encode hands its work to the build's encode service (musicbuild/service.py).
tup.export('MUSIC_ENCODE_SERVICE')

local track_args = ' --profile ' .. profile .. ' --codec ' .. tup.getconfig('CODEC')
for setting in tup.getconfig('SETTINGS'):gmatch('[^,]+') do
  track_args = track_args .. ' --' .. setting:gsub('_', '-') .. ' ' .. tup.getconfig(setting:upper())
end
-- Common fields that change the audio (music_profile.AUDIO_FIELDS), passed only when set: a
-- profile without them keeps the command lines (so the outputs) it had before they existed.
local channels = tup.getconfig('CHANNELS')
if channels ~= '' then
  track_args = track_args .. ' --channels ' .. channels
end
-- The limits of portable players (max_sample_rate, max_bit_depth: musicbuild/limits.py), likewise.
for _, limit in ipairs({'max_sample_rate', 'max_bit_depth'}) do
  local value = tup.getconfig(limit:upper())
  if value ~= '' then
    track_args = track_args .. ' --' .. limit:gsub('_', '-') .. ' ' .. value
  end
end
track_args = track_args .. ' --art ' .. tup.getconfig('ART') .. ' --art-max-size ' .. tup.getconfig('ART_MAX_SIZE')
-- MP3's id3: "2.3" only (v2.4, the default, keeps the command lines it had).
if tup.getconfig('ID3') == '2.3' then
  track_args = track_args .. ' --id3 2.3'
end

local suffix = '.' .. profile .. '.track'
for _, spec in ipairs(tup.glob('*' .. suffix)) do
  local key = spec:sub(1, #spec - #suffix)
  tup.rule({key .. '.audio', key .. '.tags', spec},
    '^ ' .. profile .. ': ' .. key .. '^ music-encode track' .. track_args ..
      ' --audio ' .. key .. '.audio --tags ' .. key .. '.tags --track ' .. spec .. ' --receipt %o',
    {key .. '.' .. profile .. '.done'})
end

local copy_suffix = '.' .. profile .. '.copy'
for _, spec in ipairs(tup.glob('*' .. copy_suffix)) do
  local key = spec:sub(1, #spec - #copy_suffix)
  tup.rule({spec}, '^ ' .. profile .. ': copy ' .. key .. '^ music-encode copy --profile ' .. profile ..
    ' --copy ' .. spec .. ' --receipt %o', {key .. '.' .. profile .. '.copied'})
end
