"""Cases shared by the lmms-eval oracle (`lmms_oracle`, which runs lmms-eval's own code on them) and our
tests: tricky replies, dataset rows for the prompts, and small benchmark sets in lmms-eval's layouts."""

from __future__ import annotations

# ~30 replies a model may give; each is scored against every gold letter in every suite.
REPLIES: list[str] = [
    "B",
    "b",
    "(B)",
    "(b)",
    "B.",
    "B)",
    "The answer is B.",
    "the correct answer is (d)",
    "**B**",
    "Ｂ",  # full-width
    "<think>A or C? C looks right.</think>B",
    "<think>unfinished reasoning about A",
    "reasoning about A...</think>\nD",
    "<THINK>A</THINK> C",  # tags are case-sensitive in lmms-eval
    "<analysis>compare them</analysis>The best answer is A",
    "",
    "   ",
    "A and C",
    "B, C",
    "I think it's a red ball.",
    "The square moves left to right.",
    "D. A book",
    "Answer: C",
    "Best option: (A",
    "E",
    "The answer is B, not A.",
    "选C",
    "Option C is correct because A and B are wrong",
    "None of the options fit.",
    "c) right to left",
    "ANSWER: (C)\n\nExplanation: the ball is blue.",
    "I cannot tell from the video.",
    "(A) is wrong; the answer is B here",  # an answer phrase outranks a parenthesized letter
    "Options (A) and (C) were close, but I choose D overall",
    "Maybe D or A?",  # the trailing "?" is stripped first, so A is the last letter
    "x(B)y 1,000",  # MVBench: a digit comma anywhere makes every punctuation mark vanish, not a space
    "." * 32 + "A.B",  # MVBench: re.UNICODE passed as `count` removes only 32 periods
]
GOLDS = "ABCD"
OPTIONS = ["left to right", "right to left", "a red ball", "a book"]

# Rows as each task's dataset has them, for the prompt tests.
VIDEOMME_DOCS = [
    {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy", "url": "",
     "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
     "question": "When demonstrating the Germany modern Christmas tree is initially decorated with apples, candles and berries, which kind of the decoration has the largest number?",
     "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are of the same number."], "answer": "C"},
    {"video_id": "002", "duration": "long", "domain": "Sports Competition", "sub_category": "Football", "url": "",
     "videoID": "v_long", "question_id": "002-3", "task_type": "Temporal Reasoning",
     "question": "What happens  after the goal?\n(two spaces above)", "options": ["A.one", "B. two ", "C. three", "D. four"],
     "answer": "A"},
]  # fmt: skip
MVBENCH_DOCS = [
    ("action_sequence", {"video": "a.mp4", "question": "What did the person do first?",
                         "candidates": ["Sat on the bed.", "Took the towel."], "answer": "Took the towel."}),
    ("episodic_reasoning", {"video": "s01e02_seg.mp4", "question": "Why is Ross upset?",
                            "candidates": ["a", "b", "c", "d", "e"], "answer": "e", "start": 1.5, "end": 9.0}),
]  # fmt: skip
LVB_DOCS = [
    {"id": "86CxyhFV9MI_0", "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json", "duration": 26.5,
     "duration_group": 60, "question": "At the start, what is the man holding?", "option0": "a cup", "option1": "a phone",
     "option2": "a book", "option3": "N/A", "option4": "N/A", "correct_choice": 1, "question_category": "E2O",
     "starting_timestamp_for_subtitles": 2.0, "view_count": 10, "level": "L1-Perception"},
    {"id": "q5", "video_path": "q5.mp4", "subtitle_path": "q5_en.json", "duration": 9.0, "duration_group": 15,
     "question": "Which?", "option0": "one", "option1": "two", "option2": "three", "option3": "four", "option4": "five",
     "correct_choice": 4, "question_category": "T3O", "starting_timestamp_for_subtitles": 0.0},
]  # fmt: skip
MLVU_DOCS = [
    {"video_name": "1_plotQA/movie101_66.mp4", "duration": 246.0, "task_type": "plotQA",
     "question": "What color is the main male character in the video?\n(A) Yellow\n(B) Red\n(C) Green\n(D) Blue",
     "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "A"},
]  # fmt: skip

# Subtitles for the subtitle tasks: Video-MME (.srt with <font> tags; the video's header fps and frame
# count decide which cues 32 sampled frames show) and LongVideoBench (JSON cues, both cue shapes).
VIDEOMME_SRT = (
    '1\n00:00:00,000 --> 00:00:01,500\n<font color="white" size=".72c">hello there</font>\n\n'
    '2\n00:00:02,000 --> 00:00:03,000\n<font color="white" size=".72c">second</font> line\n\n'
    "3\n00:00:03,000 --> 00:00:03,100\nno font tag here\n\n"
    '4\n00:00:05,000 --> 00:00:09,000\n<font color="white" size=".72c">late cue</font>\n\n'
    '5\n00:00:09,500 --> 00:00:20,000\n<font color="white" size=".72c">beyond the end</font>\n'
)
VIDEOMME_HEADER = (4.0, 36)  # fps, frames (a 9 s clip)
LVB_CUES = {
    "86CxyhFV9MI_en.json": [
        {"start": "00:00:02.000", "end": "00:00:04.500", "line": "Welcome back."},
        {"timestamp": [5.0, 5.2], "text": "short cue"},
        {"timestamp": [7.0, 12], "text": "whole-number end"},
        {"timestamp": [20.0, None], "text": "open end"},
        {"start": "00:00:40.000", "end": "00:00:41.000", "line": "after the clip"},
    ],
    "q5_en.json": [{"timestamp": [0.5, 2.5], "text": "one"}, {"timestamp": [3.0, 3.5], "text": "two"}],
}

# Small benchmark sets in lmms-eval's layouts, with the replies a scripted model gives (by row).
BENCH: dict[str, list[tuple[dict, str]]] = {
    "videomme": [
        ({**VIDEOMME_DOCS[0], "videoID": "vm1", "question_id": "001-1", "answer": "C"}, "C"),
        ({**VIDEOMME_DOCS[0], "videoID": "vm1", "question_id": "001-2", "answer": "A"}, "the correct answer is (a)"),
        ({**VIDEOMME_DOCS[1], "videoID": "vm2", "question_id": "002-1", "answer": "D"}, "<think>B?</think>D."),
        ({**VIDEOMME_DOCS[1], "videoID": "vm2", "question_id": "002-2", "answer": "B"}, ""),
    ],
    "mvbench": [
        ({"_task": "moving_direction", "video": "m1.mp4", "question": "Where?", "candidates": ["up", "down", "left"],
          "answer": "left"}, "(C) left"),
        ({"_task": "moving_direction", "video": "m2.mp4", "question": "Where now?", "candidates": ["up", "down"],
          "answer": "up"}, ""),
        ({"_task": "moving_direction", "video": "m3.mp4", "question": "And?", "candidates": ["up", "down", "up"],
          "answer": "up"}, "C"),
        ({"_task": "action_sequence", "video": "s1.mp4", "question": "First?", "candidates": ["sit", "stand"],
          "answer": "stand", "start": 0.5, "end": 1.5}, "I think it's b"),
        ({"_task": "action_sequence", "video": "s2.mp4", "question": "Then?", "candidates": ["sit", "stand"],
          "answer": "sit"}, "<think>hmm</think>   "),
    ],
    "longvideobench": [
        ({**LVB_DOCS[0], "id": "l1", "video_path": "l1.mp4", "correct_choice": 1}, "B"),
        ({**LVB_DOCS[0], "id": "l2", "video_path": "l2.mp4", "correct_choice": 0}, "The best answer is C"),
        ({**LVB_DOCS[1], "id": "l3", "video_path": "l3.mp4", "correct_choice": 4}, "E. five"),
        ({**LVB_DOCS[1], "id": "l4", "video_path": "l4.mp4", "correct_choice": 2, "question_category": "E2O"}, "(c)? No: D"),
    ],
    "mlvu": [
        ({**MLVU_DOCS[0], "video_name": "plot/a.mp4", "answer": "A"}, "A) Yellow"),
        ({**MLVU_DOCS[0], "video_name": "plot/b.mp4", "answer": "B"}, "Best option: (B"),
        ({**MLVU_DOCS[0], "video_name": "count/c.mp4", "task_type": "count", "answer": "D"}, "d"),
        ({**MLVU_DOCS[0], "video_name": "needle/d.mp4", "task_type": "needle", "answer": "C"}, "C) Green"),
    ],
}  # fmt: skip
