"""The README harness itself: what fails a README, what is masked, what runs in the background."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tutorial import readmes as harness
from tutorial.readmes import IdBook, OutputPattern, PortMap, ReadmeError, ReadmeRun, Report, parse_readme

FENCE = "```"


def write_readme(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    readme = tmp_path / "README.md"
    readme.write_text(textwrap.dedent(text).replace("'''", FENCE))
    return readme


def run(tmp_path: Path, text: str) -> Report:
    return ReadmeRun(write_readme(tmp_path, text), tmp_path / "work").run()


def shown(report: Report) -> list[str]:
    return [command.text for command in report.ran]


# --- what fails a README ---------------------------------------------------------------------


def test_a_command_that_fails_fails_the_readme_and_the_commands_after_it_are_listed_as_not_run(
    tmp_path: Path,
) -> None:
    report = run(
        tmp_path,
        """
        '''console
        $ echo first
        first
        $ false
        $ echo never
        never
        '''
        """,
    )
    assert shown(report) == ["echo first"]
    assert "line 5: `false` exited with 1, not 0" in report.failure_message()
    assert [command.text for command in report.not_run] == ["echo never"]
    assert "Not run because of that (1):\n  line 6: `echo never`" in report.failure_message()


def test_output_that_differs_from_the_readme_fails_with_a_diff(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        """
        '''console
        $ printf 'same\\nactual\\n'
        same
        expected
        '''
        """,
    )
    assert report.failure is not None
    assert "printed something else than the README shows" in report.failure
    assert "\n same\n-expected\n+actual" in report.failure


def test_an_exempt_command_is_counted_with_its_reason_and_not_run(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        """
        <!-- docs: exempt `touch was-run`: it stands for a command that cannot run here -->
        '''console
        $ touch was-run
        $ echo ran
        ran
        '''

        <!-- docs: exempt: a whole block, shown for Windows -->
        '''console
        C:\\> celery -A stage2_celery worker --pool=solo
        '''
        """,
    )
    assert report.failure is None, report.failure_message()
    assert shown(report) == ["echo ran"]
    assert [(command.text, command.exempt) for command in report.exempt] == [
        ("touch was-run", "it stands for a command that cannot run here"),
        ("(the console block)", "a whole block, shown for Windows"),
    ]
    assert not (tmp_path / "work" / "repo" / "was-run").exists()
    assert report.summary().startswith("README.md: 1 commands ran, 2 exempt\n  exempt, line 4: `touch was-run`")


def test_a_new_unmarked_command_that_does_not_run_is_refused(tmp_path: Path) -> None:
    # Without a `$ ` prompt the harness cannot tell commands from output: it refuses the block.
    with pytest.raises(ReadmeError, match="line 2: a console block shows 'make demo' before any command"):
        write_and_parse(tmp_path, "'''console\nmake demo\n'''\n")
    # A `$ ` line is a command in any block, whatever its language says.
    report = run(tmp_path, "'''text\n$ false\n'''\n")
    assert "`false` exited with 1" in report.failure_message()


def write_and_parse(tmp_path: Path, text: str) -> None:
    parse_readme(write_readme(tmp_path, text))


def test_a_marker_ignores_comments_and_a_whole_command_marks_only_itself(tmp_path: Path) -> None:
    block = """
        '''console
        $ make bench                # the full run
        $ make bench ARGS=--quick
        $ echo hi                   # not make bench
        '''
        """

    def exempt(marker: str) -> list[str]:
        readme = write_readme(tmp_path, f"<!-- docs: exempt `{marker}`: long -->" + textwrap.dedent(block))
        return [command.code for block in parse_readme(readme) for command in block.commands if command.exempt]

    assert exempt("make bench") == ["make bench"]
    assert exempt("bench") == ["make bench", "make bench ARGS=--quick"]
    assert exempt("not make") == ["echo hi"]  # no code has it: the comment tells commands apart


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs: run it twice -->\n'''console\n$ true\n'''\n", "unknown docs marker 'run it twice'"),
        ("<!-- docs: exempt `curl`: no curl -->\n'''console\n$ true\n'''\n", "`curl` is in no command"),
        ("<!-- docs: exempt: why -->\nSome text.\n'''console\n$ true\n'''\n", "must come right before its code"),
        ("'''console\n$ sleep 100 &\n'''\n", "runs in the background: say when it is ready"),
        ("<!-- docs: exempt -->\n'''console\n$ true\n'''\n", "unknown docs marker 'exempt'"),
        (
            "<!-- docs: repeat `celery` until the output matches -->\n"
            "<!-- docs: repeat `uvicorn` until the output matches -->\n"
            "'''console\n$ uvicorn stage2_celery.main:app\n'''\n",
            "chosen by two `repeat` markers, `celery` \\(line 1\\) and `uvicorn` \\(line 2\\)",
        ),
        ("'''console\n$ redis-cli llen celery\n'''\n", "a plain redis-cli ignores REDIS_URL"),
    ],
    ids=[
        "unknown marker",
        "marker for no command",
        "marker away from its block",
        "unmarked &",
        "no reason",
        "twice",
        "plain redis-cli",
    ],
)
def test_markup_the_harness_cannot_read_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ReadmeError, match=message):
        write_and_parse(tmp_path, text)


def test_a_command_that_fails_on_purpose_passes_with_its_exit_status_and_not_with_another(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        """
        <!-- docs: `exit 3` exits with 3 -->
        '''console
        $ echo oops; exit 3
        oops
        $ echo after
        after
        '''
        """,
    )
    assert report.failure is None, report.failure_message()
    report = run(tmp_path / "again", "<!-- docs: `true` exits with 2 -->\n'''console\n$ true\n'''\n")
    assert "`true` exited with 0, not 2" in report.failure_message()


# --- masks ------------------------------------------------------------------------------------


def matches(expected: str, actual: str, vary: tuple[str, ...] = ()) -> bool:
    return OutputPattern.compile(expected.splitlines(), IdBook(), vary).match(actual) is not None


def test_an_ellipsis_line_stands_for_any_lines_and_an_ellipsis_in_a_line_for_any_text_on_it() -> None:
    assert matches("HTTP/1.1 202 Accepted\n...\n{}", "HTTP/1.1 202 Accepted\r\ndate: x\r\n\r\n{}")
    assert matches("HTTP/1.1 202 Accepted\n...\n{}", "HTTP/1.1 202 Accepted\n{}")
    assert matches('{"msg":"bad",...}]}', '{"msg":"bad","input":"0","ctx":{"gt":0}}]}')
    assert not matches('{"msg":"bad",...}]}', '{"msg":"bad",\n"input":"0"}]}')
    assert not matches("a\nb", "a\nb\nc")  # no ellipsis: nothing more


def test_times_and_words_marked_vary_match_any_value_but_the_rest_is_literal() -> None:
    assert matches('{"time": "2026-11-21T10:00:00.000000+00:00"}', '{"time": "2027-01-02T03:04:05.678901+00:00"}')
    assert matches("10:00:00 {}", "23:59:07 {}")  # a time of day, as `tutorial follow` prints it
    assert matches("celery@yourhost ready.", "celery@build-7.local ready.", vary=("yourhost",))
    assert not matches("celery@yourhost ready.", "celery@build-7.local ready.")
    assert not matches("price: 1.5", "price: 105")  # "." is not a wildcard


# A traceback as Python 3.13 prints it: the source line repeated, a guess after the message.
PYTHON_3_13_TRACEBACK = (
    "printf '%s\\n' 'Traceback (most recent call last):' '  File \"<string>\", line 1, in <module>' "
    "'    from rq import Connection' \"ImportError: cannot import name 'Connection' from 'rq' "
    "(/x/rq/__init__.py). Did you mean: 'connections'?\"; exit 1"
)


def traceback_readme(last_line: str) -> str:
    """A README that shows PYTHON_3_13_TRACEBACK as Python 3.11 prints it, ending in ``last_line``."""
    return f"""
        <!-- docs: `printf` exits with 1 -->
        '''console
        $ {PYTHON_3_13_TRACEBACK}
        Traceback (most recent call last):
          File "<string>", line 1, in <module>
        {last_line}
        '''
        """


def test_a_traceback_is_compared_by_its_first_and_last_lines_without_a_newer_python_s_hint(tmp_path: Path) -> None:
    report = run(tmp_path, traceback_readme("ImportError: cannot import name 'Connection' from 'rq' (...)"))
    assert report.failure is None, report.failure_message()


def test_a_traceback_that_ends_in_another_exception_fails(tmp_path: Path) -> None:
    report = run(tmp_path, traceback_readme("ImportError: cannot import name 'Queue' from 'rq' (...)"))
    assert report.failure is not None
    assert "printed something else than the README shows" in report.failure


def test_a_variable_set_by_one_command_is_set_for_the_commands_and_processes_after_it(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        """
        '''console
        $ JOB=$(.venv/bin/python -c "import uuid; print(uuid.uuid4())")
        $ export WHERE=there
        $ echo "job $JOB is done"
        job a49b76b5-7ef7-471a-aeac-b2e3095cb559 is done
        $ echo $JOB > id.txt; .venv/bin/python -c "import os; print(os.environ['WHERE'])"
        there
        '''
        """,
    )
    assert report.failure is None, report.failure_message()
    real = (tmp_path / "work" / "repo" / "id.txt").read_text().strip()
    assert len(real) == 36 and real != "a49b76b5-7ef7-471a-aeac-b2e3095cb559"


def test_an_id_shown_again_must_be_the_same_real_id(tmp_path: Path) -> None:
    readme = """
        '''console
        $ JOB=$(.venv/bin/python -c "import uuid; print(uuid.uuid4())"); echo $JOB
        a49b76b5-7ef7-471a-aeac-b2e3095cb559
        $ {second}
        a49b76b5-7ef7-471a-aeac-b2e3095cb559
        '''
        """
    assert run(tmp_path / "same", readme.format(second="echo $JOB")).failure is None
    other = run(tmp_path / "other", readme.format(second='.venv/bin/python -c "import uuid; print(uuid.uuid4())"'))
    assert "printed something else than the README shows" in other.failure_message()


def test_the_same_id_shown_twice_in_one_output_must_be_the_same_id_twice(tmp_path: Path) -> None:
    same = "a49b76b5-7ef7-471a-aeac-b2e3095cb559 a49b76b5-7ef7-471a-aeac-b2e3095cb559"
    one, other = "83ae6571-3091-44d8-9dd2-fcb83c36dc36", "8dca0d4e-92e9-45ec-8042-632178955efe"
    assert matches(same, f"{one} {one}")
    assert not matches(same, f"{one} {other}")


def test_a_job_id_in_a_command_line_fails_the_readme_before_anything_runs(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        """
        '''console
        $ touch was-run
        $ curl localhost:8000/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6
        '''
        """,
    )
    assert "a command holds a job id (line 4: `curl localhost:8000/jobs/3fa85f64-" in report.failure_message()
    assert "JOB=$(curl ... | .venv/bin/python -m tutorial job-id)" in report.failure_message()
    assert not report.ran and len(report.not_run) == 2
    assert not (tmp_path / "work" / "repo" / "was-run").exists()


# --- ports ------------------------------------------------------------------------------------


def test_well_known_ports_are_moved_in_commands_output_and_settings_alike(tmp_path: Path) -> None:
    ports = PortMap(redis_port=41234)
    assert ports.apply("redis://localhost:6379/0") == "redis://localhost:41234/0"
    moved = ports.apply("curl localhost:8000/jobs --port 8000")
    assert "8000" not in moved and moved.count(str(ports.moved[8000])) == 2
    assert ports.settings()["SMTP_PORT"] == str(ports.moved[8025])
    assert '"x": 8000' in ports.apply('{"x": 8000}')  # a number is not a port
    report = run(
        tmp_path,
        """
        '''console
        $ echo "localhost:8000 SMTP_PORT=$SMTP_PORT REDIS_URL=$REDIS_URL"
        localhost:8000 SMTP_PORT=8025 REDIS_URL=redis://localhost:6379/0
        '''
        """,
    )
    assert report.failure is None, report.failure_message()


def test_a_port_the_harness_does_not_know_is_refused(tmp_path: Path) -> None:
    report = run(tmp_path, "'''console\n$ curl localhost:5566/\n'''\n")
    assert "port 5566 in 'curl localhost:5566/' is not in WELL_KNOWN_PORTS" in report.failure_message()


# --- processes --------------------------------------------------------------------------------

SERVER = """
<!-- docs: background `http.server`, ready when localhost:8000/ answers -->
'''console
$ .venv/bin/python -m http.server 8000 --bind 127.0.0.1     # terminal 1
$ curl -o /dev/null -w '%{http_code}\\n' localhost:8000/no-such-file
404
{more}
'''
"""


def test_a_background_process_is_ready_before_the_next_command_and_stopped_when_the_readme_fails(
    tmp_path: Path,
) -> None:
    readme_run = ReadmeRun(write_readme(tmp_path, SERVER.replace("{more}", "$ false")), tmp_path / "work")
    report = readme_run.run()
    # The curl got its 404 from the server: it was ready before the curl ran.
    assert [command.line for command in report.ran] == [4, 5]
    assert "`false` exited with 1" in report.failure_message()
    assert "The processes the README started:" in report.failure_message()
    [(_, server)] = readme_run.background
    assert not server.is_running()


def test_the_output_of_a_background_process_may_show_what_later_commands_cause(tmp_path: Path) -> None:
    text = SERVER.replace("{more}", "") + (
        "\n<!-- docs: output of `http.server` -->\n'''\n...\"GET /later HTTP/1.1\" 404 -\n'''\n\n"
        "'''console\n$ curl -o /dev/null localhost:8000/later\n'''\n"
    )
    report = run(tmp_path, text)
    assert report.failure is None, report.failure_message()

    never = ReadmeRun(write_readme(tmp_path / "again", text.replace("/later HTTP", "/never HTTP")), tmp_path / "w2")
    never.output_of_timeout = 1  # it will not come: no need to wait the full deadline
    report = never.run()
    assert "the output of `http.server` never printed the lines the README shows" in report.failure_message()


def test_repeat_runs_a_command_again_until_its_output_matches(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        """
        <!-- docs: repeat `tries` until the output matches -->
        '''console
        $ echo try >> tries && wc -l < tries
        3
        '''
        """,
    )
    assert report.failure is None, report.failure_message()
    assert (tmp_path / "work" / "repo" / "tries").read_text() == "try\n" * 3


# --- Python snippets --------------------------------------------------------------------------


def test_a_python_snippet_is_run_and_must_succeed(tmp_path: Path) -> None:
    assert run(tmp_path, "'''python\nprint('fine')\n'''\n").snippets_run == 1
    report = run(tmp_path / "again", "'''python\nraise SystemExit(3)\n'''\n")
    assert "the Python block exited with 3" in report.failure_message()


def test_a_cited_python_snippet_must_match_the_lines_of_its_file(tmp_path: Path) -> None:
    first_line = Path(__file__).read_text().splitlines()[0]
    cite = "<!-- docs: same as `tests/docs/test_harness.py` lines 1-1 -->\n'''python\n{}\n'''\n"
    assert run(tmp_path, cite.format(first_line)).snippets_cited == 1
    report = run(tmp_path / "again", cite.format('"""Something else."""'))
    assert "the block differs from tests/docs/test_harness.py lines 1-1" in report.failure_message()


def test_the_example_in_the_markup_guide_is_valid_markup(tmp_path: Path) -> None:
    guide = harness.__doc__ or ""
    example = textwrap.dedent(guide[guide.index("    <!-- docs: background `make services`") : guide.index("Running:")])
    blocks = parse_readme(write_readme(tmp_path, example))
    commands = [command for block in blocks for command in block.commands]
    assert [bool(command.background) for command in commands[:3]] == [True, True, True]
    assert [command.repeat for command in commands[3:5]] == [False, True]  # the POST, then the GET
    assert commands[-1].exempt == "Windows only (`--pool=solo`); the tests run the solo pool on Linux"


def test_commands_get_the_moved_ports_settings_and_never_a_learners_result_backend_or_makes_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exported by a learner, or set by `make demo VENV=...`: none may reach a README's commands.
    for name in ("RESULT_BACKEND_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "MAKEFLAGS", "MAKELEVEL"):
        monkeypatch.setenv(name, "redis://localhost:6379/0")
    report = run(
        tmp_path,
        """
        '''console
        $ echo "${RESULT_BACKEND_URL-no} ${CELERY_BROKER_URL-no} ${CELERY_RESULT_BACKEND-no} ${MAKEFLAGS-no}"
        no no no no
        $ echo $REDIS_URL
        redis://localhost:6379/0
        '''
        """,
    )
    assert report.failure is None, report.failure_message()
