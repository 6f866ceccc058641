# bash completion for cpmgatectl(8). The words come from the program's own
# command table (the hidden "cpmgatectl __complete WORD..."), so the
# completion follows every command and option the installed program has.

_cpmgatectl()
{
    local ctl=${COMP_WORDS[0]} line cur=${COMP_WORDS[COMP_CWORD]}
    if ! command -v "$ctl" >/dev/null 2>&1; then
        # sbin is not on every user's PATH
        for ctl in /usr/sbin/cpmgatectl /usr/local/sbin/cpmgatectl ""; do
            [[ -x $ctl ]] && break
        done
        [[ $ctl ]] || return 0
    fi
    COMPREPLY=()
    while IFS= read -r line; do
        if [[ $line == ::files ]]; then
            compopt -o filenames 2>/dev/null
            while IFS= read -r line; do
                COMPREPLY+=("$line")
            done < <(compgen -f -- "$cur")
        else
            COMPREPLY+=("$line")
        fi
    done < <("$ctl" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
    return 0
}
complete -F _cpmgatectl cpmgatectl
