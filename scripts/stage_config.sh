# Sourced by the stage scripts: `stage_config STAGE DATASET` prints the repository's config of that
# stage and dataset, or names the known datasets and returns 2.
stage_config() {
  local folder="$here/configs/$1" known names
  if [[ -f "$folder/$2.yaml" ]]; then
    echo "$folder/$2.yaml"
    return
  fi
  known=("$folder"/*.yaml); known=("${known[@]##*/}"); names="${known[*]%.yaml}"
  echo "error: unknown DATASET '$2'; known: ${names// /, } (configs/$1/*.yaml)" >&2
  return 2
}
